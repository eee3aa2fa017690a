//! `tls-server-end-point` channel binding data (RFC 5929): the hash of the server's
//! certificate, with the hash of its signature algorithm, SHA-256 for MD5 and SHA-1.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// The hash functions the channel binding can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndPointHash {
    /// For certificates signed with MD5, SHA-1 or SHA-256.
    Sha256,
    /// For certificates signed with SHA-384.
    Sha384,
    /// For certificates signed with SHA-512.
    Sha512,
}

// DER contents of the signature algorithm OIDs PostgreSQL's OpenSSL lookup accepts.
const RSA_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1
const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]; // 1.2.840.10045.4.1
const ECDSA_SHA2_PREFIX: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03]; // 1.2.840.10045.4.3

/// The hash for a certificate, or `None` when its signature algorithm has no single hash
/// (Ed25519, RSA-PSS) or the DER cannot be read; then SCRAM runs without channel binding.
pub fn end_point_hash(cert_der: &[u8]) -> Option<EndPointHash> {
    let oid = signature_algorithm_oid(cert_der)?;
    if let Some(last) = oid.strip_prefix(RSA_PREFIX) {
        return match last {
            [4] | [5] | [11] | [14] => Some(EndPointHash::Sha256), // md5, sha1, sha256, sha224
            [12] => Some(EndPointHash::Sha384),
            [13] => Some(EndPointHash::Sha512),
            _ => None,
        };
    }
    if oid == ECDSA_SHA1 {
        return Some(EndPointHash::Sha256);
    }
    match oid.strip_prefix(ECDSA_SHA2_PREFIX)? {
        [1] | [2] => Some(EndPointHash::Sha256), // sha224, sha256
        [3] => Some(EndPointHash::Sha384),
        [4] => Some(EndPointHash::Sha512),
        _ => None,
    }
}

/// The `tls-server-end-point` binding data for the server certificate `cert_der`.
pub fn tls_server_end_point(cert_der: &[u8]) -> Option<Vec<u8>> {
    Some(match end_point_hash(cert_der)? {
        EndPointHash::Sha256 => Sha256::digest(cert_der).to_vec(),
        EndPointHash::Sha384 => Sha384::digest(cert_der).to_vec(),
        EndPointHash::Sha512 => Sha512::digest(cert_der).to_vec(),
    })
}

/// Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm SEQUENCE { OID, ... }, ... }
fn signature_algorithm_oid(der: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = element(der, 0x30)?;
    let (_tbs, rest) = element(certificate, 0x30)?;
    let (algorithm, _) = element(rest, 0x30)?;
    let (oid, _) = element(algorithm, 0x06)?;
    Some(oid)
}

/// Reads one DER element with the expected tag: (contents, what follows).
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_cert(oid: &[u8]) -> Vec<u8> {
        let tbs = [0x30, 0x03, 0x02, 0x01, 0x00];
        let mut algorithm = vec![0x06, oid.len() as u8];
        algorithm.extend_from_slice(oid);
        let mut body = tbs.to_vec();
        body.extend_from_slice(&[0x30, algorithm.len() as u8]);
        body.extend_from_slice(&algorithm);
        body.extend_from_slice(&[0x03, 0x01, 0x00]);
        let mut cert = vec![0x30, 0x81, body.len() as u8];
        cert.extend_from_slice(&body);
        cert
    }

    #[test]
    fn picks_the_hash_from_the_signature_algorithm() {
        let rsa = |n: u8| fake_cert(&[RSA_PREFIX, &[n]].concat());
        assert_eq!(
            end_point_hash(&rsa(4)),
            Some(EndPointHash::Sha256),
            "md5 → sha256"
        );
        assert_eq!(
            end_point_hash(&rsa(5)),
            Some(EndPointHash::Sha256),
            "sha1 → sha256"
        );
        assert_eq!(end_point_hash(&rsa(11)), Some(EndPointHash::Sha256));
        assert_eq!(end_point_hash(&rsa(12)), Some(EndPointHash::Sha384));
        assert_eq!(end_point_hash(&rsa(13)), Some(EndPointHash::Sha512));
        assert_eq!(end_point_hash(&rsa(10)), None, "RSA-PSS");
        let ecdsa = |n: u8| fake_cert(&[ECDSA_SHA2_PREFIX, &[n]].concat());
        assert_eq!(end_point_hash(&ecdsa(2)), Some(EndPointHash::Sha256));
        assert_eq!(end_point_hash(&ecdsa(3)), Some(EndPointHash::Sha384));
        assert_eq!(
            end_point_hash(&fake_cert(ECDSA_SHA1)),
            Some(EndPointHash::Sha256)
        );
        assert_eq!(
            end_point_hash(&fake_cert(&[0x2b, 0x65, 0x70])),
            None,
            "Ed25519"
        );
        assert_eq!(end_point_hash(b"\x30\x05junk"), None);
        let cert = ecdsa(2);
        assert_eq!(
            tls_server_end_point(&cert),
            Some(Sha256::digest(&cert).to_vec())
        );
    }
}
