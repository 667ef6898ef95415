//! The adversarial end-to-end suite (issue 6): the real binary in front of
//! the recording echo backend, attacked the ways reverse proxies of this kind
//! have been bypassed before (path normalisation, token confusion, header
//! spoofing, request smuggling, policy mistakes).
//!
//! The suite is data. One file per class of attack builds its cases
//! ([`paths`], [`methods`], [`tokens`], [`headers`], [`framing`], and
//! [`policy`] for the policy world and the policy files), each naming what
//! it sends (raw bytes where a client library would refuse), what the proxy
//! must answer and therefore whether the backend may see it; [`kit`] has
//! what they are written with. One driver, [`driver::run`], sends every
//! case, checks the status and the answer's shape, and checks the backend
//! recorder: nothing refused reached it, and an allowed request reached it
//! exactly once, with the canonical path. It prints `N passed, N failed`
//! and fails the test listing every failed case.
//!
//! The table runs once per transport, each against proxies of its own:
//! plain HTTP/1.1, the same bytes inside TLS, and HTTP/2 inside TLS for
//! every case HTTP/2 can say ([`driver::h2_form`];
//! [`driver::H2_DIFFERENCES`] lists where its answer differs). What the
//! HTTP/2 client library will not send (pseudo-header and `:path` tricks)
//! is written frame by frame in [`h2_tricks`], with the codec of
//! [`h2_codec`].
//!
//! Timing and connection behaviour do not fit one request per case: slow
//! clients, pipelining and protocol upgrades have tests of their own in
//! [`connection`].
//!
//! Every test is declared here, at the root, so the suite's test names do
//! not depend on the file a test's code lives in.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

#[path = "../common/mod.rs"]
mod common;

mod connection;
mod driver;
mod forwarded;
mod framing;
mod h2_codec;
mod h2_tricks;
mod headers;
mod kit;
mod methods;
mod paths;
mod policy;
mod tokens;

use driver::{table_over, Transport};

const LAB: &str = "/v1/zambda/lab-results-ingest/execute";
const LAB_ID: &str = "2419a78e-4c0a-411d-b8e2-90dc081f5efa";
const BILLING: &str = "/v1/zambda/billing-export/execute";
const BILLING_ID: &str = "c81e728d-9d4c-4f2a-b1e3-5a7f6b2d9e10";
const SLOTS: &str = "/v1/zambda/appointment-slots/execute-public";
const SLOTS_ID: &str = "3b9a6e4f-1c2d-4e8f-a7b6-0d5c4e3f2a19";

/// The main world's issuer also takes HS256 with this secret, so the
/// HS/RS confusion cases meet a real HMAC key rather than an empty list.
const HMAC_ENV: &str = "ZG_ADVERSARIAL_HMAC_SECRET";
const HMAC_SECRET: &str = "adversarial-suite-hmac-secret-0123456789abcdef";
/// The policy world's second issuer: HMAC only.
const HMAC_ISSUER: &str = "https://hmac.test/";

// ---------------------------------------------------------------------------
// The table, one test per transport
// ---------------------------------------------------------------------------

#[tokio::test]
async fn adversarial_table() {
    table_over(Transport::Plain, 460).await;
}

/// The same bytes inside TLS: every HTTP case of the table.
#[tokio::test]
async fn adversarial_table_over_tls() {
    table_over(Transport::Tls, 400).await;
}

/// Every case HTTP/2 can say, as HTTP/2 (see [`driver::h2_form`] for what it
/// cannot).
#[tokio::test]
async fn adversarial_table_over_h2() {
    table_over(Transport::H2, 300).await;
}

// ---------------------------------------------------------------------------
// HTTP/2 written by hand
// ---------------------------------------------------------------------------

#[tokio::test]
async fn h2_pseudo_header_and_path_tricks() {
    h2_tricks::h2_pseudo_header_and_path_tricks().await;
}

// ---------------------------------------------------------------------------
// Connection behaviour
// ---------------------------------------------------------------------------

#[tokio::test]
async fn pipelined_requests_with_a_denied_one_between_allowed_ones() {
    connection::pipelined_requests_with_a_denied_one_between_allowed_ones().await;
}

#[tokio::test]
async fn a_pipeline_mixes_identities_refusals_and_bad_framing() {
    connection::a_pipeline_mixes_identities_refusals_and_bad_framing().await;
}

#[tokio::test]
async fn keep_alive_requests_with_a_denied_one_between_allowed_ones() {
    connection::keep_alive_requests_with_a_denied_one_between_allowed_ones().await;
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_peers() {
    forwarded::forwarded_for_is_believed_only_from_trusted_peers().await;
}

#[tokio::test]
async fn slow_clients_do_not_hold_up_others() {
    connection::slow_clients_do_not_hold_up_others().await;
}

#[tokio::test]
async fn stalled_body_and_idle_keep_alive_time_out() {
    connection::stalled_body_and_idle_keep_alive_time_out().await;
}

#[tokio::test]
async fn stalled_request_head_times_out() {
    connection::stalled_request_head_times_out().await;
}

#[tokio::test]
async fn cached_token_is_refused_once_expired() {
    connection::cached_token_is_refused_once_expired().await;
}

#[tokio::test]
async fn an_upgrade_cannot_open_a_tunnel_past_the_checks() {
    connection::an_upgrade_cannot_open_a_tunnel_past_the_checks().await;
}
