//! `postgres://` / `postgresql://` URLs as libpq reads them:
//! `postgresql://[user[:password]@][host][:port][/dbname][?key=value&...]`.

use super::EndpointError;

/// Splits the URL into (key, value) pairs; query parameters come last so they win.
pub(super) fn parse(url: &str) -> Result<Vec<(String, String)>, EndpointError> {
    let rest = url
        .strip_prefix("postgresql://")
        .or_else(|| url.strip_prefix("postgres://"))
        .ok_or_else(|| {
            EndpointError::InvalidUrl(format!("\"{url}\" does not start with postgres://"))
        })?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = main.split_once('/').unwrap_or((main, ""));
    let mut pairs = Vec::new();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    if let Some(userinfo) = userinfo {
        let (user, password) = match userinfo.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (userinfo, None),
        };
        push(&mut pairs, "user", user)?;
        if let Some(password) = password {
            push(&mut pairs, "password", password)?;
        }
    }
    let (host, port) = split_host_port(hostport)?;
    push(&mut pairs, "host", host)?;
    if let Some(port) = port {
        push(&mut pairs, "port", port)?;
    }
    push(&mut pairs, "dbname", path)?;
    parse_query(query, &mut pairs)?;
    Ok(pairs)
}

fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), EndpointError> {
    if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or_else(|| {
            EndpointError::InvalidUrl(format!("missing \"]\" in host \"{hostport}\""))
        })?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(EndpointError::InvalidUrl(format!(
                    "unexpected \"{after}\" after host \"[{host}]\""
                ))),
            },
        };
    }
    Ok(match hostport.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    })
}

fn parse_query(query: &str, pairs: &mut Vec<(String, String)>) -> Result<(), EndpointError> {
    for item in query.split('&').filter(|item| !item.is_empty()) {
        let (key, value) = item.split_once('=').ok_or_else(|| {
            EndpointError::InvalidUrl(format!("query parameter \"{item}\" has no \"=\""))
        })?;
        let key = decode(key)?;
        let value = decode(value)?;
        // libpq accepts the JDBC spelling ssl=true as sslmode=require.
        if key == "ssl" && value == "true" {
            pairs.push(("sslmode".to_owned(), "require".to_owned()));
        } else {
            pairs.push((key, value));
        }
    }
    Ok(())
}

fn push(pairs: &mut Vec<(String, String)>, key: &str, raw: &str) -> Result<(), EndpointError> {
    if !raw.is_empty() {
        pairs.push((key.to_owned(), decode(raw)?));
    }
    Ok(())
}

/// Percent-decodes one URL part.
fn decode(part: &str) -> Result<String, EndpointError> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| {
                    EndpointError::InvalidUrl(format!("invalid percent-encoding in \"{part}\""))
                })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| {
        EndpointError::InvalidUrl(format!("\"{part}\" is not UTF-8 after percent-decoding"))
    })
}
