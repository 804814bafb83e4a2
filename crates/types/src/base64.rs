//! Base64 as Go's `[]byte` JSON, Docker secrets and basic auth write it
//! (standard alphabet, padded): the `base64` crate's. Decoding is lenient
//! the way clients need: padding may be left out, and the URL-safe
//! alphabet is taken too.

use ::base64::Engine as _;
use ::base64::alphabet;
use ::base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

pub fn encode(input: &[u8]) -> String {
    STANDARD.encode(input)
}

pub fn decode(input: &str) -> Option<Vec<u8>> {
    STANDARD.decode(input).or_else(|_| URL_SAFE.decode(input)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for (raw, enc) in
            [(&b""[..], ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (b"foob", "Zm9vYg==")]
        {
            assert_eq!(encode(raw), enc);
            assert_eq!(decode(enc).unwrap(), raw);
        }
        assert_eq!(decode("Zm8").unwrap(), b"fo", "padding may be left out");
        assert_eq!(decode("-_8=").unwrap(), [0xfb, 0xff], "URL-safe alphabet");
        assert_eq!(decode("a"), None);
        assert_eq!(decode("Zm9v!"), None);
    }
}
