//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`) as integers hostlet can compute with.
//!
//! Follows apimachinery's `resource.Quantity` grammar: a signed decimal number followed by either
//! a binary SI suffix (`Ki`…`Ei`), a decimal SI suffix (`n u m "" k M G T P E`) or a decimal
//! exponent (`e3`, `E-2`). Like `Quantity.MilliValue()`/`Value()`, fractions round up, so a
//! limit is never made smaller than written.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "invalid quantity {0:?}: expected a number with an optional suffix (m, k, Mi, Gi, e3, ...)"
    )]
    Syntax(String),
    #[error("invalid quantity {0:?}: must not be negative")]
    Negative(String),
    #[error("invalid quantity {0:?}: too large")]
    Overflow(String),
}

/// `hugepages-2Mi`, `hugepages-1Gi`: the resource names of huge pages.
pub const HUGEPAGES_PREFIX: &str = "hugepages-";

/// The page size of a hugepages resource name (`hugepages-2Mi` → 2097152); None for
/// other resources.
pub fn hugepage_size(resource: &str) -> Option<Result<u64, QuantityError>> {
    let size = resource.strip_prefix(HUGEPAGES_PREFIX)?;
    Some(
        parse_memory_bytes(&Quantity(size.to_string()))
            .and_then(|v| u64::try_from(v).map_err(|_| QuantityError::Negative(size.into()))),
    )
}

/// CPU in millicores: `"500m"` → 500, `"2"` → 2000, `"0.1"` → 100, `"1u"` → 1 (rounded up).
pub fn parse_cpu_millis(q: &Quantity) -> Result<i64, QuantityError> {
    parse_scaled(&q.0, 3)
}

/// Memory (or any byte count) in bytes: `"128Mi"` → 134217728, `"1G"` → 10^9, `"1.5k"` → 1500.
pub fn parse_memory_bytes(q: &Quantity) -> Result<i64, QuantityError> {
    parse_scaled(&q.0, 0)
}

/// Parses `s` and returns its value × 10^`extra_exp10`, rounded up to an integer.
fn parse_scaled(s: &str, extra_exp10: i32) -> Result<i64, QuantityError> {
    let syntax = || QuantityError::Syntax(s.to_string());
    let overflow = || QuantityError::Overflow(s.to_string());
    let (negative, t) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(num_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
        return Err(syntax());
    }

    let (exp10, pow1024): (i32, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 1),
        "Mi" => (0, 2),
        "Gi" => (0, 3),
        "Ti" => (0, 4),
        "Pi" => (0, 5),
        "Ei" => (0, 6),
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(syntax)?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(syntax());
            }
            // Anything beyond this is zero or overflows i64 either way.
            let e: i32 = exp.parse().map_err(|_| overflow())?;
            if !(-1000..=1000).contains(&e) {
                return Err(if e > 0 { overflow() } else { syntax() });
            }
            (e, 0)
        }
    };

    // value = mantissa × 10^scale × 1024^pow1024, computed exactly in u128.
    let mut mantissa: u128 = 0;
    for b in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(b - b'0')))
            .ok_or_else(overflow)?;
    }
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative(s.to_string()));
    }
    mantissa = mantissa
        .checked_mul(1024u128.pow(pow1024))
        .ok_or_else(overflow)?;
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| syntax())?;
    let scale = exp10 + extra_exp10 - frac_len;

    let value = if scale >= 0 {
        if mantissa == 0 {
            0
        } else {
            let factor = 10u128.checked_pow(scale as u32).ok_or_else(overflow)?;
            mantissa.checked_mul(factor).ok_or_else(overflow)?
        }
    } else {
        match 10u128.checked_pow(scale.unsigned_abs()) {
            Some(div) => mantissa.div_ceil(div),
            // The divisor exceeds any u128 mantissa: a positive value rounds up to 1.
            None => u128::from(mantissa != 0),
        }
    };
    i64::try_from(value).map_err(|_| overflow())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn cpu() {
        for (s, want) in [
            ("500m", 500),
            ("1", 1000),
            ("2", 2000),
            ("0.1", 100),
            (".5", 500),
            ("1.", 1000),
            ("1.5", 1500),
            ("100u", 1),
            ("1n", 1),
            ("0", 0),
            ("0m", 0),
            ("1k", 1_000_000),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("5e-1", 500),
            ("+2", 2000),
            ("0.0001", 1),
        ] {
            assert_eq!(parse_cpu_millis(&q(s)), Ok(want), "{s}");
        }
    }

    #[test]
    fn memory() {
        for (s, want) in [
            ("128Mi", 128 << 20),
            ("1Gi", 1 << 30),
            ("1Ki", 1024),
            ("1G", 1_000_000_000),
            ("1.5k", 1500),
            ("1.5Gi", 3 << 29),
            ("100", 100),
            ("1E", 1_000_000_000_000_000_000),
            ("1e6", 1_000_000),
            ("1Ei", 1 << 60),
            ("500m", 1),
            ("0.5", 1),
            ("7Ei", 7 << 60),
        ] {
            assert_eq!(parse_memory_bytes(&q(s)), Ok(want), "{s}");
        }
    }

    #[test]
    fn invalid() {
        for s in [
            "", " ", "abc", "1x", "1 Gi", "1.2.3", ".", "Gi", "1mi", "1e", "1e+", "1KiB", "--1",
            "1e3.5",
        ] {
            assert!(
                matches!(parse_memory_bytes(&q(s)), Err(QuantityError::Syntax(_))),
                "{s:?}: {:?}",
                parse_memory_bytes(&q(s))
            );
        }
        assert!(matches!(
            parse_cpu_millis(&q("-1")),
            Err(QuantityError::Negative(_))
        ));
        assert_eq!(parse_cpu_millis(&q("-0")), Ok(0));
        for s in [
            "16Ei",
            "1e19",
            "1e999999999999",
            "99999999999999999999999999999999999999999999",
        ] {
            assert!(
                matches!(parse_memory_bytes(&q(s)), Err(QuantityError::Overflow(_))),
                "{s:?}: {:?}",
                parse_memory_bytes(&q(s))
            );
        }
        assert_eq!(parse_memory_bytes(&q("1e-999")), Ok(1));
        let msg = parse_memory_bytes(&q("12Gx")).unwrap_err().to_string();
        assert!(msg.contains("\"12Gx\""), "{msg}");
    }
}
