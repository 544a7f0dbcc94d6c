//! Lowercase hexadecimal, the text form of hashes, keys and signatures in checkpoint and key
//! files. Written here rather than taken from a crate: it is a dozen lines, and the files'
//! format should not move with a dependency.

/// The lowercase hexadecimal digits of `bytes`, two per byte.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(char::from(DIGITS[usize::from(byte >> 4)]));
        text.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    text
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
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return Err(HexError::Length { expected: 2 * N, found: digits.len() });
    }
    let value = |digit: u8| char::from(digit).to_digit(16).expect("checked above") as u8;
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = value(pair[0]) << 4 | value(pair[1]);
    }
    Ok(bytes)
}

/// The bytes whose hexadecimal form is `text` (either case, two digits per byte).
pub fn decode_vec(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) {
        return Err(format!("an odd number of hexadecimal digits ({})", text.len()));
    }
    text.as_bytes()
        .chunks_exact(2)
        .enumerate()
        .map(|(i, pair)| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|pair| {
                    u8::from_str_radix(pair, 16).ok().filter(|_| pair.bytes().all(|b| b.is_ascii_hexdigit()))
                })
                .ok_or_else(|| format!("not hexadecimal at offset {}", 2 * i))
        })
        .collect()
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
