//! Test certificates made with rcgen: a CA, a server certificate, a client certificate
//! (CN = a role name) and a second, unrelated CA.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A certificate and its key, PEM encoded.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A certificate authority that can sign leaves.
pub struct Ca {
    pub pem: Pem,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-signed CA");
        let pem = Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ca { pem, params, key }
    }

    /// A leaf with the given subject alternative names (IPs become IP SANs) and CN.
    pub fn leaf(&self, common_name: &str, sans: &[&str]) -> Pem {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("signed leaf");
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}
