//! Authentication: trust, cleartext, MD5, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS
//! (channel binding `tls-server-end-point` under TLS).

use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{
    ChannelBinding, ScramSha256, SCRAM_SHA_256, SCRAM_SHA_256_PLUS,
};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::{server_error, Backend, Connection};
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::tls::tls_server_end_point;

/// How the server authenticated the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No password asked (trust, peer, cert).
    Trust,
    /// Cleartext password.
    Cleartext,
    /// MD5 password hash.
    Md5,
    /// SCRAM-SHA-256 without channel binding.
    ScramSha256,
    /// SCRAM-SHA-256-PLUS with `tls-server-end-point` channel binding.
    ScramSha256Plus,
}

/// The channel binding choice for SCRAM (the GS2 header's flag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScramBinding {
    /// `p=tls-server-end-point`: SCRAM-SHA-256-PLUS with this binding data.
    Plus(Vec<u8>),
    /// `y`: we could bind but the server did not offer PLUS.
    Unrequested,
    /// `n`: no TLS (or a certificate without a usable hash), so no binding.
    Unsupported,
}

impl ScramBinding {
    fn mechanism(&self) -> &'static str {
        match self {
            ScramBinding::Plus(_) => SCRAM_SHA_256_PLUS,
            _ => SCRAM_SHA_256,
        }
    }

    fn into_channel_binding(self) -> ChannelBinding {
        match self {
            ScramBinding::Plus(data) => ChannelBinding::tls_server_end_point(data),
            ScramBinding::Unrequested => ChannelBinding::unrequested(),
            ScramBinding::Unsupported => ChannelBinding::unsupported(),
        }
    }
}

/// Picks the SCRAM variant from the server's mechanisms and our binding data.
pub(crate) fn choose_scram(
    mechanisms: &[String],
    binding: Option<Vec<u8>>,
) -> Result<ScramBinding, Error> {
    let offers = |name: &str| mechanisms.iter().any(|m| m == name);
    match binding {
        Some(data) if offers(SCRAM_SHA_256_PLUS) => Ok(ScramBinding::Plus(data)),
        Some(_) if offers(SCRAM_SHA_256) => Ok(ScramBinding::Unrequested),
        None if offers(SCRAM_SHA_256) => Ok(ScramBinding::Unsupported),
        _ => Err(Error::UnsupportedAuth(format!(
            "SASL ({})",
            mechanisms.join(", ")
        ))),
    }
}

/// Answers the server's authentication requests until AuthenticationOk.
pub(super) async fn authenticate(
    conn: &mut Connection,
    endpoint: &Endpoint,
) -> Result<AuthMethod, Error> {
    let mut method = AuthMethod::Trust;
    loop {
        match conn.recv().await? {
            Backend::Message(Message::AuthenticationOk) => return Ok(method),
            Backend::Message(Message::AuthenticationCleartextPassword) => {
                frontend::password_message(password(endpoint)?.as_bytes(), conn.write_buf())?;
                conn.flush().await?;
                method = AuthMethod::Cleartext;
            }
            Backend::Message(Message::AuthenticationMd5Password(body)) => {
                let hash = md5_hash(
                    endpoint.user.as_bytes(),
                    password(endpoint)?.as_bytes(),
                    body.salt(),
                );
                frontend::password_message(hash.as_bytes(), conn.write_buf())?;
                conn.flush().await?;
                method = AuthMethod::Md5;
            }
            Backend::Message(Message::AuthenticationSasl(body)) => {
                let mechanisms: Vec<String> =
                    body.mechanisms().map(|m| Ok(m.to_owned())).collect()?;
                method = scram(conn, endpoint, &mechanisms).await?;
            }
            Backend::Message(Message::ErrorResponse(body)) => {
                return Err(server_error(&body)?.into())
            }
            Backend::Message(Message::AuthenticationGss | Message::AuthenticationSspi) => {
                return Err(Error::UnsupportedAuth("GSSAPI/SSPI".into()))
            }
            _ => {
                return Err(Error::Protocol(
                    "unexpected message during authentication".into(),
                ))
            }
        }
    }
}

fn password(endpoint: &Endpoint) -> Result<&str, Error> {
    endpoint.password().ok_or_else(|| Error::PasswordMissing {
        endpoint: endpoint.describe(),
    })
}

/// Runs the SCRAM exchange up to (not including) AuthenticationOk.
async fn scram(
    conn: &mut Connection,
    endpoint: &Endpoint,
    mechanisms: &[String],
) -> Result<AuthMethod, Error> {
    let binding_data = conn
        .stream()
        .peer_certificate()
        .and_then(|cert| tls_server_end_point(cert));
    let binding = choose_scram(mechanisms, binding_data)?;
    let mechanism = binding.mechanism();
    let method = match binding {
        ScramBinding::Plus(_) => AuthMethod::ScramSha256Plus,
        _ => AuthMethod::ScramSha256,
    };
    let mut scram = ScramSha256::new(
        password(endpoint)?.as_bytes(),
        binding.into_channel_binding(),
    );
    frontend::sasl_initial_response(mechanism, scram.message(), conn.write_buf())?;
    conn.flush().await?;
    let server_first = match conn.recv().await? {
        Backend::Message(Message::AuthenticationSaslContinue(body)) => body,
        Backend::Message(Message::ErrorResponse(body)) => return Err(server_error(&body)?.into()),
        _ => {
            return Err(Error::Protocol(
                "expected AuthenticationSASLContinue".into(),
            ))
        }
    };
    scram.update(server_first.data())?;
    frontend::sasl_response(scram.message(), conn.write_buf())?;
    conn.flush().await?;
    match conn.recv().await? {
        Backend::Message(Message::AuthenticationSaslFinal(body)) => scram.finish(body.data())?,
        Backend::Message(Message::ErrorResponse(body)) => return Err(server_error(&body)?.into()),
        _ => return Err(Error::Protocol("expected AuthenticationSASLFinal".into())),
    }
    Ok(method)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scram_channel_binding_selection() {
        let both = names(&[SCRAM_SHA_256_PLUS, SCRAM_SHA_256]);
        let plain = names(&[SCRAM_SHA_256]);
        assert_eq!(
            choose_scram(&both, Some(vec![1, 2])).unwrap(),
            ScramBinding::Plus(vec![1, 2])
        );
        assert_eq!(
            choose_scram(&plain, Some(vec![1])).unwrap(),
            ScramBinding::Unrequested
        );
        assert_eq!(
            choose_scram(&both, None).unwrap(),
            ScramBinding::Unsupported
        );
        assert_eq!(
            choose_scram(&plain, None).unwrap(),
            ScramBinding::Unsupported
        );
        assert_eq!(ScramBinding::Plus(vec![]).mechanism(), "SCRAM-SHA-256-PLUS");
        assert_eq!(ScramBinding::Unrequested.mechanism(), "SCRAM-SHA-256");
        let error = choose_scram(&names(&["OTHER"]), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the server asks for the unsupported authentication method SASL (OTHER)"
        );
    }

    #[test]
    fn gs2_headers_follow_the_choice() {
        let first = |binding: ScramBinding| {
            let scram = ScramSha256::new(b"pw", binding.into_channel_binding());
            String::from_utf8_lossy(scram.message()).into_owned()
        };
        assert!(first(ScramBinding::Plus(vec![0; 32])).starts_with("p=tls-server-end-point,,n=,r="));
        assert!(first(ScramBinding::Unrequested).starts_with("y,,n=,r="));
        assert!(first(ScramBinding::Unsupported).starts_with("n,,n=,r="));
    }
}
