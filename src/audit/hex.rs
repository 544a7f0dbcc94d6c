//! Lowercase hexadecimal, the text form of hashes, keys and signatures in checkpoint, key,
//! bundle and backup files: the `hex` crate (the one codec of the project; other modules call
//! it directly), with the decoding of a fixed number of bytes and the errors that name what is
//! wrong, which the files' readers report.

/// The lowercase hexadecimal digits of `bytes`, two per byte.
pub fn encode(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// Why text is not the hexadecimal form of `N` bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("expected {expected} hexadecimal digits, found {found}")]
    Length { expected: usize, found: usize },
    #[error("{found:?} at offset {offset} is not a hexadecimal digit")]
    Digit { offset: usize, found: char },
}

/// The `N` bytes whose hexadecimal form is `text` (either case, exactly `2·N` digits).
pub fn decode<const N: usize>(text: &str) -> Result<[u8; N], HexError> {
    if let Some((offset, found)) = text.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
        return Err(HexError::Digit { offset, found });
    }
    // Only ASCII digits remain: one byte each.
    if text.len() != 2 * N {
        return Err(HexError::Length { expected: 2 * N, found: text.len() });
    }
    let mut bytes = [0; N];
    ::hex::decode_to_slice(text, &mut bytes).expect("digits and length checked above");
    Ok(bytes)
}

/// The bytes whose hexadecimal form is `text` (either case, two digits per byte).
pub fn decode_vec(text: &str) -> Result<Vec<u8>, String> {
    ::hex::decode(text).map_err(|e| match e {
        ::hex::FromHexError::OddLength => format!("an odd number of hexadecimal digits ({})", text.len()),
        ::hex::FromHexError::InvalidHexCharacter { index, .. } => {
            format!("not hexadecimal at offset {}", index - index % 2)
        }
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_other_text() {
        assert_eq!(encode(&[0x00, 0x7f, 0xa5, 0xff]), "007fa5ff");
        assert_eq!(decode::<4>("007fa5ff"), Ok([0x00, 0x7f, 0xa5, 0xff]));
        assert_eq!(decode::<4>("007FA5FF"), Ok([0x00, 0x7f, 0xa5, 0xff]));
        assert_eq!(decode::<4>("007fa5f"), Err(HexError::Length { expected: 8, found: 7 }));
        assert_eq!(decode::<4>("007fa5fg"), Err(HexError::Digit { offset: 7, found: 'g' }));
        assert_eq!(decode::<2>("0é0"), Err(HexError::Digit { offset: 1, found: 'é' }));
        assert_eq!(decode::<2>(" 1ff"), Err(HexError::Digit { offset: 0, found: ' ' }));
        assert_eq!(decode::<2>("+1ff"), Err(HexError::Digit { offset: 0, found: '+' }));
    }
}
