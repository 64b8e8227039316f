//! Just enough DER to read what the certificate credential needs from an X.509 certificate
//! (`notAfter`, the RSA modulus) and from an RSA private key (PKCS#1 or PKCS#8), so that a PEM
//! whose key does not match its certificate, or whose key is too small, is refused at load time
//! with a clear message instead of an AADSTS error later.

use chrono::{DateTime, NaiveDateTime, Utc};

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const EXPLICIT_0: u8 = 0xa0;
/// 1.2.840.113549.1.1.1 (rsaEncryption).
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// One TLV: its tag, its content, and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The content of a TLV that must have tag `want`, and what follows it.
fn expect(input: &[u8], want: u8) -> Option<(&[u8], &[u8])> {
    let (tag, content, rest) = tlv(input)?;
    (tag == want).then_some((content, rest))
}

/// An unsigned big-endian integer without its leading zero bytes.
fn unsigned(int: &[u8]) -> &[u8] {
    let start = int.iter().position(|b| *b != 0).unwrap_or(int.len());
    &int[start..]
}

/// Bits of an unsigned big-endian integer.
pub(crate) fn bit_len(int: &[u8]) -> usize {
    let n = unsigned(int);
    match n.first() {
        None => 0,
        Some(b) => n.len() * 8 - b.leading_zeros() as usize,
    }
}

/// What the credential needs from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CertInfo {
    /// `notAfter`, if it could be read.
    pub(crate) not_after: Option<DateTime<Utc>>,
    /// RSA modulus (no leading zeros); `None` when the key is not RSA.
    pub(crate) rsa_modulus: Option<Vec<u8>>,
}

/// Reads an X.509 certificate's validity end and RSA modulus. `None` when the DER is not a
/// certificate at all.
pub(crate) fn certificate(der: &[u8]) -> Option<CertInfo> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    // [0] EXPLICIT version, optional.
    if let Some((EXPLICIT_0, _, r)) = tlv(rest) {
        rest = r;
    }
    let (_serial, r) = expect(rest, INTEGER)?;
    let (_sig_alg, r) = expect(r, SEQUENCE)?;
    let (_issuer, r) = expect(r, SEQUENCE)?;
    let (validity, r) = expect(r, SEQUENCE)?;
    let (_subject, r) = expect(r, SEQUENCE)?;
    let (spki, _) = expect(r, SEQUENCE)?;
    let not_after = tlv(validity)
        .and_then(|(_, _, after)| tlv(after))
        .and_then(|(tag, value, _)| time(tag, value));
    Some(CertInfo {
        not_after,
        rsa_modulus: spki_rsa_modulus(spki),
    })
}

fn spki_rsa_modulus(spki: &[u8]) -> Option<Vec<u8>> {
    let (alg, r) = expect(spki, SEQUENCE)?;
    let (oid, _) = expect(alg, OID)?;
    if oid != RSA_ENCRYPTION {
        return None;
    }
    let (bits, _) = expect(r, BIT_STRING)?;
    let (_unused, key) = bits.split_first()?;
    let (rsa, _) = expect(key, SEQUENCE)?;
    let (n, _) = expect(rsa, INTEGER)?;
    Some(unsigned(n).to_vec())
}

/// The RSA modulus of a private key, PKCS#8 (`PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`).
/// `None` when it is not an RSA private key.
pub(crate) fn private_key_modulus(der: &[u8], pkcs8: bool) -> Option<Vec<u8>> {
    let rsa_der = if pkcs8 {
        let (info, _) = expect(der, SEQUENCE)?;
        let (_version, r) = expect(info, INTEGER)?;
        let (alg, r) = expect(r, SEQUENCE)?;
        let (oid, _) = expect(alg, OID)?;
        if oid != RSA_ENCRYPTION {
            return None;
        }
        let (key, _) = expect(r, OCTET_STRING)?;
        key
    } else {
        der
    };
    let (rsa, _) = expect(rsa_der, SEQUENCE)?;
    let (_version, r) = expect(rsa, INTEGER)?;
    let (n, _) = expect(r, INTEGER)?;
    Some(unsigned(n).to_vec())
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 50–99 are 19xx) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, value: &[u8]) -> Option<DateTime<Utc>> {
    let s = std::str::from_utf8(value).ok()?.strip_suffix('Z')?;
    let full = match tag {
        UTC_TIME => {
            let yy: u32 = s.get(..2)?.parse().ok()?;
            format!("{}{s}", if yy >= 50 { "19" } else { "20" })
        }
        GENERALIZED_TIME => s.to_owned(),
        _ => return None,
    };
    // Fractional seconds are allowed in GeneralizedTime; drop them.
    let whole = full.split('.').next()?;
    NaiveDateTime::parse_from_str(whole, "%Y%m%d%H%M%S")
        .ok()
        .map(|t| t.and_utc())
}

/// The PKCS#1 `RSAPrivateKey` inside a PKCS#8 `PrivateKeyInfo` (tests convert keys with it).
#[cfg(test)]
pub(crate) fn pkcs8_to_pkcs1(der: &[u8]) -> Option<Vec<u8>> {
    let (info, _) = expect(der, SEQUENCE)?;
    let (_version, r) = expect(info, INTEGER)?;
    let (_alg, r) = expect(r, SEQUENCE)?;
    let (key, _) = expect(r, OCTET_STRING)?;
    Some(key.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_short_and_long_forms() {
        assert_eq!(
            tlv(&[0x02, 0x01, 0x05, 0xff]),
            Some((0x02, &[0x05][..], &[0xff][..]))
        );
        let mut long = vec![0x04, 0x82, 0x01, 0x00];
        long.extend(std::iter::repeat_n(7u8, 256));
        let (tag, content, rest) = tlv(&long).unwrap();
        assert_eq!((tag, content.len(), rest.len()), (0x04, 256, 0));
        assert_eq!(tlv(&[0x04, 0x82, 0x01]), None, "truncated length");
        assert_eq!(
            tlv(&[0x04, 0x05, 0x01]),
            None,
            "content shorter than its length"
        );
        assert_eq!(tlv(&[]), None);
    }

    #[test]
    fn times_and_bit_lengths() {
        assert_eq!(
            time(UTC_TIME, b"491231235959Z").map(|t| t.to_rfc3339()),
            Some("2049-12-31T23:59:59+00:00".into())
        );
        assert_eq!(
            time(UTC_TIME, b"500101000000Z").map(|t| t.to_rfc3339()),
            Some("1950-01-01T00:00:00+00:00".into())
        );
        assert_eq!(
            time(GENERALIZED_TIME, b"20500101000000Z").map(|t| t.to_rfc3339()),
            Some("2050-01-01T00:00:00+00:00".into())
        );
        assert_eq!(time(UTC_TIME, b"garbage"), None);
        assert_eq!(bit_len(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_len(&[0x01]), 1);
        assert_eq!(bit_len(&[]), 0);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert_eq!(certificate(b"not der at all"), None);
        assert_eq!(private_key_modulus(b"\x30\x03\x02\x01", true), None);
    }
}
