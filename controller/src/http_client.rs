//! HTTP clients of Iris's APIs (the controller's, the broker's) that may
//! speak HTTPS: `irisctl`, the broker and the HaaS gateway calling the
//! controller.
//!
//! Given the CA a private deployment's certificates chain to, the client
//! trusts that CA alone, through [`crate::tls`]'s rustls configuration on
//! ring, the one every Iris server and client uses.
//! Without it, reqwest's own rustls with the system's roots. reqwest is
//! built with its `rustls` feature, whose own crypto provider (aws-lc-rs)
//! serves the clients given no configuration: with `rustls-no-provider`
//! every reqwest client in the workspace (the controller's forwarder, the
//! gateway's reports, the tests' clients) would need a process-wide
//! provider installed first or panic when built.

use std::path::Path;

/// `builder`, trusting only the CA certificates of the PEM file `ca` for
/// `https://` URLs when given; plain `http://` URLs are unaffected.
pub fn trusting(
    builder: reqwest::ClientBuilder,
    ca: Option<&Path>,
) -> Result<reqwest::ClientBuilder, String> {
    match ca {
        None => Ok(builder),
        Some(ca) => Ok(builder.tls_backend_preconfigured(crate::tls::https_client_config(ca)?)),
    }
}

/// What went wrong with a request, with every cause reqwest wraps (its
/// own text for a refused certificate is only "error sending request").
pub fn error_text(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}
