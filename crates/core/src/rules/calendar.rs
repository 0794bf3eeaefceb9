//! French public holidays (jours fériés), for rules that skip them: a
//! schedule that dims the lights at 22:00 on working days must know that
//! 14 July is not one. Alsace-Moselle's two extra days are not included.

use jiff::civil::Date;

/// Easter Sunday of `year` (anonymous Gregorian algorithm, Meeus/Jones/Butcher).
/// `None` for a year jiff cannot represent.
pub fn easter_sunday(year: i16) -> Option<Date> {
    let y = i32::from(year);
    let a = y % 19;
    let b = y / 100;
    let c = y % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    Date::new(year, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()
}

/// The eleven public holidays of `year`, in calendar order.
pub fn public_holidays(year: i16) -> Vec<Date> {
    let fixed = [(1, 1), (5, 1), (5, 8), (7, 14), (8, 15), (11, 1), (11, 11), (12, 25)];
    let mut days: Vec<Date> = fixed
        .into_iter()
        .filter_map(|(m, d)| Date::new(year, m, d).ok())
        .collect();
    if let Some(easter) = easter_sunday(year) {
        // Easter Monday, Ascension Thursday, Whit Monday.
        for offset in [1, 39, 50] {
            if let Ok(day) = easter.checked_add(jiff::Span::new().days(offset)) {
                days.push(day);
            }
        }
    }
    days.sort();
    days
}

/// Whether `date` is a French public holiday.
pub fn is_public_holiday(date: Date) -> bool {
    let (m, d) = (date.month(), date.day());
    if matches!(
        (m, d),
        (1, 1) | (5, 1) | (5, 8) | (7, 14) | (8, 15) | (11, 1) | (11, 11) | (12, 25)
    ) {
        return true;
    }
    // Easter-based holidays fall between 23 March and 14 June.
    if !(3..=6).contains(&m) {
        return false;
    }
    easter_sunday(date.year()).is_some_and(|easter| {
        let days = (date - easter).get_days();
        matches!(days, 1 | 39 | 50)
    })
}

#[cfg(test)]
mod tests {
    use jiff::civil::date;

    use super::*;

    #[test]
    fn easter_sundays_known_years() {
        assert_eq!(easter_sunday(2024), Some(date(2024, 3, 31)));
        assert_eq!(easter_sunday(2025), Some(date(2025, 4, 20)));
        assert_eq!(easter_sunday(2026), Some(date(2026, 4, 5)));
        assert_eq!(easter_sunday(2027), Some(date(2027, 3, 28)));
        assert_eq!(easter_sunday(2038), Some(date(2038, 4, 25)));
    }

    #[test]
    fn holidays_2026() {
        let expected = [
            date(2026, 1, 1),
            date(2026, 4, 6),
            date(2026, 5, 1),
            date(2026, 5, 8),
            date(2026, 5, 14),
            date(2026, 5, 25),
            date(2026, 7, 14),
            date(2026, 8, 15),
            date(2026, 11, 1),
            date(2026, 11, 11),
            date(2026, 12, 25),
        ];
        assert_eq!(public_holidays(2026), expected);
        assert!(expected.iter().all(|d| is_public_holiday(*d)));
    }

    #[test]
    fn holidays_2027() {
        let expected = [
            date(2027, 1, 1),
            date(2027, 3, 29),
            date(2027, 5, 1),
            date(2027, 5, 6),
            date(2027, 5, 8),
            date(2027, 5, 17),
            date(2027, 7, 14),
            date(2027, 8, 15),
            date(2027, 11, 1),
            date(2027, 11, 11),
            date(2027, 12, 25),
        ];
        assert_eq!(public_holidays(2027), expected);
        assert!(expected.iter().all(|d| is_public_holiday(*d)));
    }

    #[test]
    fn ordinary_days_are_not_holidays() {
        for d in [
            date(2026, 4, 5),
            date(2026, 4, 7),
            date(2026, 12, 24),
            date(2027, 3, 28),
        ] {
            assert!(!is_public_holiday(d), "{d}");
        }
        // Every day of 2026 but the eleven.
        let mut day = date(2026, 1, 1);
        let mut count = 0;
        while day.year() == 2026 {
            count += usize::from(is_public_holiday(day));
            day = day.tomorrow().expect("in range");
        }
        assert_eq!(count, 11);
    }
}
