//! TLS for `--transport tls`: a self-signed certificate made for the run, put in a server's data
//! directory, and `ssl = on` by reload. The replicators connect with `sslmode=require`, which
//! encrypts without checking the certificate: the cost measured is the encryption's.

use anyhow::{Context, Result};
use pgmorph::cluster::LocalCluster;

/// Turns TLS on for `cluster` with a certificate made here.
pub fn enable(cluster: &LocalCluster) -> Result<()> {
    let key = rcgen::KeyPair::generate().context("making a TLS key")?;
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .context("making a TLS certificate")?;
    let cert = params
        .self_signed(&key)
        .context("signing the certificate")?;
    cluster
        .enable_tls(&cert.pem(), &key.serialize_pem())
        .context("turning TLS on")
}
