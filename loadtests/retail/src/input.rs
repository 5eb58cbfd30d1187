//! Reading the CSV: one [`CsvLine`] per order line, with typed fields.
//!
//! The file is RFC 4180 CSV (quoted fields may contain commas and doubled quotes), UTF-8, with a
//! header naming the columns. Columns are found by name, so their order does not matter and
//! extra columns (`description`, `is_cancellation`, `source`) are ignored. Every field is
//! validated; a malformed line is an error naming the line, never a silent skip.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// One order line of the file, typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvLine {
    /// Line number in the file (the header is line 1).
    pub line_no: u64,
    /// Invoice number as written (`489434`, `C489449`, `A506401`).
    pub invoice: String,
    /// The stock code as written (not trimmed: a code with spaces is not a SKU id).
    pub stock_code: String,
    /// Units; negative on cancellations and write-offs.
    pub quantity: i64,
    /// `invoice_date` as ms since the Unix epoch, the wall-clock time read as UTC.
    pub time_ms: u64,
    /// `unit_price` in millionths of a pound (exact: no floating point).
    pub unit_price_micros: i64,
    /// The customer, `None` for guests and for stock movements.
    pub customer: Option<u32>,
    /// The customer's country as written.
    pub country: String,
}

impl CsvLine {
    /// Whether the invoice number marks a cancellation (a leading `C`).
    pub fn is_cancellation(&self) -> bool {
        self.invoice.starts_with('C')
    }
}

/// A malformed input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// Line of the file (1 = header), 0 when not tied to a line.
    pub line: u64,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for InputError {}

fn err(line: u64, message: impl Into<String>) -> InputError {
    InputError {
        line,
        message: message.into(),
    }
}

/// Columns the reader needs, by header name.
const COLUMNS: [&str; 7] = [
    "invoice",
    "stock_code",
    "quantity",
    "invoice_date",
    "unit_price",
    "customer_id",
    "country",
];

/// Opens a data file: gzip-compressed if its name ends in `.gz`, plain CSV otherwise.
pub fn open(path: &Path) -> Result<Box<dyn Read>, InputError> {
    let file = File::open(path).map_err(|e| err(0, format!("{}: {e}", path.display())))?;
    let reader = BufReader::with_capacity(1 << 16, file);
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::GzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// Reads every line of a CSV stream (header first), in file order.
pub fn read_lines<R: Read>(reader: R) -> Result<Vec<CsvLine>, InputError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| err(1, format!("header: {e}")))?
        .clone();
    let mut index = [0usize; COLUMNS.len()];
    for (slot, name) in index.iter_mut().zip(COLUMNS) {
        *slot = headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| err(1, format!("no column `{name}`")))?;
    }
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut line_no = 1u64;
    loop {
        match csv.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                let line = e.position().map_or(line_no + 1, |p| p.line());
                return Err(err(line, e.to_string()));
            }
        }
        line_no = record.position().map_or(line_no + 1, |p| p.line());
        let field = |i: usize| record.get(index[i]).unwrap_or("");
        out.push(parse_record(
            line_no,
            [
                field(0),
                field(1),
                field(2),
                field(3),
                field(4),
                field(5),
                field(6),
            ],
        )?);
    }
    Ok(out)
}

/// Parses one line from its fields in [`COLUMNS`] order.
fn parse_record(line_no: u64, f: [&str; 7]) -> Result<CsvLine, InputError> {
    let [invoice, stock_code, quantity, date, price, customer, country] = f;
    if invoice.is_empty() {
        return Err(err(line_no, "empty invoice"));
    }
    let quantity: i64 = quantity
        .trim()
        .parse()
        .map_err(|_| err(line_no, format!("bad quantity {quantity:?}")))?;
    let time_ms = parse_datetime_ms(date.trim())
        .ok_or_else(|| err(line_no, format!("bad invoice_date {date:?}")))?;
    let unit_price_micros = parse_decimal_micros(price.trim())
        .ok_or_else(|| err(line_no, format!("bad unit_price {price:?}")))?;
    let customer = match customer.trim() {
        "" => None,
        c => Some(
            c.parse::<u32>()
                .map_err(|_| err(line_no, format!("bad customer_id {c:?}")))?,
        ),
    };
    Ok(CsvLine {
        line_no,
        invoice: invoice.to_owned(),
        stock_code: stock_code.to_owned(),
        quantity,
        time_ms,
        unit_price_micros,
        customer,
        country: country.trim().to_owned(),
    })
}

/// Parses `YYYY-MM-DD HH:MM:SS` (read as UTC) into ms since the Unix epoch.
pub fn parse_datetime_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b' ' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let part = &s[from..to];
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, minute, second) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    if day > days_in_month(year, month) || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
    Some(secs * 1000)
}

fn is_leap(year: u32) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian, year >= 1970).
fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let mut days = 0u64;
    for y in 1970..year {
        days += if is_leap(y) { 366 } else { 365 };
    }
    for m in 1..month {
        days += u64::from(days_in_month(year, m));
    }
    days + u64::from(day - 1)
}

/// Formats ms since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC): the inverse of
/// [`parse_datetime_ms`], for reports.
pub fn format_datetime_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let mut days = secs / 86_400;
    let rem = secs % 86_400;
    let mut year = 1970u32;
    loop {
        let len = if is_leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let mut month = 1u32;
    loop {
        let len = u64::from(days_in_month(year, month));
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    format!(
        "{year:04}-{month:02}-{:02} {:02}:{:02}:{:02}",
        days + 1,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Parses a decimal such as `6.95`, `-11062.06` or `0.001` into millionths, exactly. At most
/// six decimals; no exponent.
pub fn parse_decimal_micros(s: &str) -> Option<i64> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if frac.len() > 6 || !int.bytes().chain(frac.bytes()).all(|c| c.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let mut micros: i64 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    for _ in frac.len()..6 {
        micros *= 10;
    }
    let value = whole.checked_mul(1_000_000)?.checked_add(micros)?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "invoice,stock_code,description,quantity,invoice_date,unit_price,customer_id,country,is_cancellation,source\n";

    fn read(body: &str) -> Result<Vec<CsvLine>, InputError> {
        read_lines(format!("{HEADER}{body}").as_bytes())
    }

    #[test]
    fn parses_a_plain_line() {
        let lines = read(
            "489434,85048,15CM CHRISTMAS GLASS BALL 20 LIGHTS,12,2009-12-01 07:45:00,6.95,13085,United Kingdom,False,II_2009-2010\n",
        )
        .expect("parses");
        assert_eq!(
            lines,
            vec![CsvLine {
                line_no: 2,
                invoice: "489434".into(),
                stock_code: "85048".into(),
                quantity: 12,
                time_ms: 1_259_653_500_000,
                unit_price_micros: 6_950_000,
                customer: Some(13085),
                country: "United Kingdom".into(),
            }]
        );
    }

    #[test]
    fn quoting_negative_quantity_and_empty_customer() {
        let lines = read(concat!(
            "489434,22041,\"RECORD FRAME 7\"\" SINGLE SIZE \",48,2009-12-01 07:45:00,2.1,13085,United Kingdom,False,II_2009-2010\n",
            "C489449,22087,\"PAPER BUNTING WHITE LACE, \"\"OLD\"\"\",-12,2009-12-01 10:33:00,2.95,16321,Australia,True,II_2009-2010\n",
            "489464,21733,85123a mixed,-96,2009-12-01 10:52:00,0.0,,United Kingdom,False,II_2009-2010\n",
            "489525,85227,,1,2009-12-01 11:49:00,0.001,,\"Korea, Republic\",False,II_2009-2010\n",
        ))
        .expect("parses");
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].stock_code, "22041");
        assert_eq!(lines[0].quantity, 48);
        assert_eq!(lines[0].unit_price_micros, 2_100_000);
        assert_eq!(lines[1].invoice, "C489449");
        assert!(lines[1].is_cancellation());
        assert_eq!(lines[1].quantity, -12);
        assert_eq!(lines[1].customer, Some(16321));
        assert_eq!(lines[1].country, "Australia");
        assert_eq!(lines[2].quantity, -96);
        assert_eq!(lines[2].customer, None);
        assert_eq!(lines[2].unit_price_micros, 0);
        assert_eq!(lines[3].unit_price_micros, 1_000);
        assert_eq!(lines[3].country, "Korea, Republic");
        assert_eq!(
            lines.iter().map(|l| l.line_no).collect::<Vec<_>>(),
            [2, 3, 4, 5]
        );
    }

    #[test]
    fn a_quoted_newline_keeps_line_numbers_right() {
        let lines = read(concat!(
            "1,A1,\"two\nlines\",1,2010-01-01 00:00:00,1,,UK,False,x\n",
            "2,A2,,1,2010-01-01 00:00:00,1,,UK,False,x\n",
        ))
        .expect("parses");
        assert_eq!(lines[0].line_no, 2);
        assert_eq!(lines[1].line_no, 4);
    }

    #[test]
    fn columns_are_found_by_name() {
        let csv = "country,customer_id,unit_price,invoice_date,quantity,stock_code,invoice\nUK,7,1.5,2010-03-01 12:00:00,2,ABC,9\n";
        let lines = read_lines(csv.as_bytes()).expect("parses");
        assert_eq!(lines[0].invoice, "9");
        assert_eq!(lines[0].stock_code, "ABC");
        assert_eq!(lines[0].unit_price_micros, 1_500_000);
        assert_eq!(lines[0].customer, Some(7));
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line() {
        let e = read("1,A,,x,2010-01-01 00:00:00,1,,UK,False,s\n").expect_err("bad qty");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("quantity"), "{e}");
        let e = read("1,A,,1,2010-02-30 00:00:00,1,,UK,False,s\n").expect_err("bad date");
        assert!(e.message.contains("invoice_date"), "{e}");
        let e = read("1,A,,1,2010-01-01 00:00:00,1e3,,UK,False,s\n").expect_err("bad price");
        assert!(e.message.contains("unit_price"), "{e}");
        let e = read("1,A,,1,2010-01-01 00:00:00,1,12.5,UK,False,s\n").expect_err("bad customer");
        assert!(e.message.contains("customer_id"), "{e}");
        let e = read_lines("invoice,quantity\n1,2\n".as_bytes()).expect_err("missing column");
        assert!(e.message.contains("stock_code"), "{e}");
        let e = read("1,A,,1\n").expect_err("short line");
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn datetimes_are_utc_and_round_trip() {
        assert_eq!(parse_datetime_ms("1970-01-01 00:00:00"), Some(0));
        assert_eq!(
            parse_datetime_ms("2010-11-30 19:35:00"),
            Some(1_291_145_700_000)
        );
        assert_eq!(
            parse_datetime_ms("2012-02-29 00:00:01"),
            Some(1_330_473_601_000)
        );
        assert_eq!(parse_datetime_ms("2010-02-29 00:00:00"), None);
        assert_eq!(parse_datetime_ms("2010-1-01 00:00:00"), None);
        assert_eq!(parse_datetime_ms("2010-01-01T00:00:00"), None);
        assert_eq!(parse_datetime_ms("2010-01-01 24:00:00"), None);
        for s in [
            "2009-12-01 07:45:00",
            "2010-11-30 19:35:00",
            "2012-12-31 23:59:59",
        ] {
            let ms = parse_datetime_ms(s).expect("valid");
            assert_eq!(format_datetime_ms(ms), s);
        }
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(parse_decimal_micros("6.95"), Some(6_950_000));
        assert_eq!(parse_decimal_micros("0"), Some(0));
        assert_eq!(parse_decimal_micros("0.0"), Some(0));
        assert_eq!(parse_decimal_micros(".5"), Some(500_000));
        assert_eq!(parse_decimal_micros("-53594.36"), Some(-53_594_360_000));
        assert_eq!(parse_decimal_micros("0.000001"), Some(1));
        assert_eq!(parse_decimal_micros("0.0000001"), None);
        assert_eq!(parse_decimal_micros(""), None);
        assert_eq!(parse_decimal_micros("."), None);
        assert_eq!(parse_decimal_micros("1e-05"), None);
        assert_eq!(parse_decimal_micros("nan"), None);
    }
}
