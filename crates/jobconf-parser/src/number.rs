//! C's `strtol`/`strtoul` as Upstart uses them to read numbers in stanzas:
//! the whole string must be a number (`*endptr == '\0'`) and in range
//! (`errno != ERANGE`). Leading C whitespace and a sign are allowed, and
//! `strtoul` negates a `-` number modulo 2^64, exactly as C does.

use nom::{
    IResult, Parser,
    bytes::complete::{take_while, take_while1},
    character::complete::one_of,
    combinator::{all_consuming, opt},
};

/// `isspace` in the C locale.
fn c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Whitespace, optional sign, digits of `radix`, and nothing after.
fn c_number(radix: u32) -> impl Fn(&str) -> IResult<&str, (bool, &str)> {
    move |input| {
        let (rest, (_, sign, digits)) = all_consuming((
            take_while(c_space),
            opt(one_of("+-")),
            take_while1(|c: char| c.is_digit(radix)),
        ))
        .parse(input)?;
        Ok((rest, (sign == Some('-'), digits)))
    }
}

/// The magnitude, or `None` on overflow of `u64`.
fn magnitude(digits: &str, radix: u32) -> Option<u64> {
    digits.chars().try_fold(0u64, |acc, c| {
        acc.checked_mul(u64::from(radix))?
            .checked_add(u64::from(c.to_digit(radix)?))
    })
}

/// `strtol(s, &end, radix)` accepted only when all of `s` was read and no
/// `ERANGE` was raised.
pub(crate) fn strtol(s: &str, radix: u32) -> Option<i64> {
    if s.is_empty() {
        // No digits at all leaves `endptr` at the start, which is the NUL.
        return Some(0);
    }
    let (_, (negative, digits)) = c_number(radix)(s).ok()?;
    let m = magnitude(digits, radix)?;
    if negative {
        if m > i64::MAX as u64 + 1 {
            None
        } else {
            Some((m as i128).wrapping_neg() as i64)
        }
    } else {
        i64::try_from(m).ok()
    }
}

/// `strtoul(s, &end, radix)` accepted only when all of `s` was read and no
/// `ERANGE` was raised (a `-` wraps, as in C).
pub(crate) fn strtoul(s: &str, radix: u32) -> Option<u64> {
    if s.is_empty() {
        return Some(0);
    }
    let (_, (negative, digits)) = c_number(radix)(s).ok()?;
    let m = magnitude(digits, radix)?;
    Some(if negative { m.wrapping_neg() } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_reads_whole_decimal_numbers_only() {
        assert_eq!(strtol("10", 10), Some(10));
        assert_eq!(strtol("-10", 10), Some(-10));
        assert_eq!(strtol("+7", 10), Some(7));
        assert_eq!(strtol(" 5", 10), Some(5));
        assert_eq!(strtol("99foo", 10), None);
        assert_eq!(strtol("foo", 10), None);
        assert_eq!(strtol("", 10), Some(0), "C accepts an empty string as 0");
        assert_eq!(strtol(" ", 10), None);
        assert_eq!(strtol("-", 10), None);
        assert_eq!(strtol("5 ", 10), None);
        assert_eq!(strtol("9223372036854775807", 10), Some(i64::MAX));
        assert_eq!(strtol("-9223372036854775808", 10), Some(i64::MIN));
        assert_eq!(strtol("10000000000000000000", 10), None);
    }

    #[test]
    fn strtoul_wraps_negative_numbers_like_c() {
        assert_eq!(strtoul("-1", 10), Some(u64::MAX));
        assert_eq!(strtoul("18446744073709551615", 10), Some(u64::MAX));
        assert_eq!(strtoul("20000000000000000000", 10), None);
        assert_eq!(strtoul("0755", 8), Some(0o755));
        assert_eq!(strtoul("999", 8), None);
    }
}
