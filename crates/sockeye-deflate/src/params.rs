//! The four parameters of RFC 7692 §7.1, parsed from offers and responses
//! with its rules: no unknown or duplicate parameters, window bits a decimal
//! 8–15 without leading zeros, `no_context_takeover` without a value.

use sockeye_proto::extension::ExtensionItem;

use crate::error::Error;

/// The extension token.
pub const EXTENSION: &str = "permessage-deflate";

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// What a permessage-deflate element says, as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Params {
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (offers only).
    pub(crate) client_max_window_bits: Option<Option<u8>>,
}

/// The agreed parameters of one connection (window bits 15 when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Agreement {
    /// The server resets its compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message.
    pub client_no_context_takeover: bool,
    /// The server compresses with at most this window (2^bits bytes).
    pub server_max_window_bits: u8,
    /// The client compresses with at most this window.
    pub client_max_window_bits: u8,
}

impl Default for Agreement {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl Agreement {
    /// The response element a server sends for this agreement.
    pub fn to_item(self, echo_client_bits: bool) -> ExtensionItem {
        let mut item = ExtensionItem::new(EXTENSION);
        if self.server_no_context_takeover {
            item = item.with_param(SERVER_NO_CONTEXT_TAKEOVER, None);
        }
        if self.client_no_context_takeover {
            item = item.with_param(CLIENT_NO_CONTEXT_TAKEOVER, None);
        }
        if self.server_max_window_bits < 15 {
            item = item.with_param(
                SERVER_MAX_WINDOW_BITS,
                Some(self.server_max_window_bits.to_string()),
            );
        }
        if echo_client_bits {
            item = item.with_param(
                CLIENT_MAX_WINDOW_BITS,
                Some(self.client_max_window_bits.to_string()),
            );
        }
        item
    }
}

/// Parses window bits: a decimal 8–15 without leading zeros.
fn window_bits(value: &str, name: &'static str) -> Result<u8, Error> {
    let ok = matches!(value.len(), 1 | 2)
        && !value.starts_with('0')
        && value.bytes().all(|b| b.is_ascii_digit());
    match value.parse::<u8>() {
        Ok(bits @ 8..=15) if ok => Ok(bits),
        _ => Err(Error::InvalidValue(name)),
    }
}

impl Params {
    /// Parses one permessage-deflate element (offer or response).
    pub(crate) fn parse(item: &ExtensionItem) -> Result<Self, Error> {
        let mut p = Self::default();
        let mut seen = [false; 4];
        for (name, value) in item.params() {
            let (index, key) = match name.to_ascii_lowercase().as_str() {
                SERVER_NO_CONTEXT_TAKEOVER => (0, SERVER_NO_CONTEXT_TAKEOVER),
                CLIENT_NO_CONTEXT_TAKEOVER => (1, CLIENT_NO_CONTEXT_TAKEOVER),
                SERVER_MAX_WINDOW_BITS => (2, SERVER_MAX_WINDOW_BITS),
                CLIENT_MAX_WINDOW_BITS => (3, CLIENT_MAX_WINDOW_BITS),
                _ => return Err(Error::UnknownParameter(name.clone())),
            };
            if std::mem::replace(&mut seen[index], true) {
                return Err(Error::DuplicateParameter(key));
            }
            match (index, value.as_deref()) {
                (0, None) => p.server_no_context_takeover = true,
                (1, None) => p.client_no_context_takeover = true,
                (2, Some(v)) => p.server_max_window_bits = Some(window_bits(v, key)?),
                (3, None) => p.client_max_window_bits = Some(None),
                (3, Some(v)) => p.client_max_window_bits = Some(Some(window_bits(v, key)?)),
                _ => return Err(Error::InvalidValue(key)),
            }
        }
        Ok(p)
    }

    /// The client's offer as an element.
    pub(crate) fn to_item(self) -> ExtensionItem {
        let mut item = ExtensionItem::new(EXTENSION);
        if self.server_no_context_takeover {
            item = item.with_param(SERVER_NO_CONTEXT_TAKEOVER, None);
        }
        if self.client_no_context_takeover {
            item = item.with_param(CLIENT_NO_CONTEXT_TAKEOVER, None);
        }
        if let Some(bits) = self.server_max_window_bits {
            item = item.with_param(SERVER_MAX_WINDOW_BITS, Some(bits.to_string()));
        }
        match self.client_max_window_bits {
            Some(Some(bits)) => {
                item = item.with_param(CLIENT_MAX_WINDOW_BITS, Some(bits.to_string()));
            }
            Some(None) => item = item.with_param(CLIENT_MAX_WINDOW_BITS, None),
            None => {}
        }
        item
    }
}

/// Whether an element is a permessage-deflate one.
pub(crate) fn is_deflate(item: &ExtensionItem) -> bool {
    item.name().eq_ignore_ascii_case(EXTENSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Params, Error> {
        let items = ExtensionItem::parse_list(s).unwrap();
        Params::parse(&items[0])
    }

    #[test]
    fn parses_every_parameter() {
        let p = parse(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits",
        )
        .unwrap();
        assert!(p.server_no_context_takeover && p.client_no_context_takeover);
        assert_eq!(p.server_max_window_bits, Some(10));
        assert_eq!(p.client_max_window_bits, Some(None));
        assert_eq!(
            parse("permessage-deflate; client_max_window_bits=\"9\"")
                .unwrap()
                .client_max_window_bits,
            Some(Some(9))
        );
    }

    #[test]
    fn rejects_what_rfc_7692_rejects() {
        for bad in [
            "permessage-deflate; unknown",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=abc",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn renders_and_reparses() {
        let p =
            parse("permessage-deflate; server_max_window_bits=12; client_max_window_bits").unwrap();
        assert_eq!(Params::parse(&p.to_item()).unwrap(), p);
        let a = Agreement {
            server_no_context_takeover: true,
            client_max_window_bits: 9,
            ..Agreement::default()
        };
        assert_eq!(
            a.to_item(true).to_string(),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=9"
        );
    }
}
