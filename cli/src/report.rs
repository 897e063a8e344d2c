//! Tabular command output rendered as an aligned table, JSON or CSV.

use std::fmt::Write as _;

/// How the CLI prints results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Rows with named columns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Report {
    pub fn new<I, S>(columns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Report {
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Table => self.table(),
            Format::Json => self.json(),
            Format::Csv => self.csv(),
            Format::Jsonl => self.jsonl(),
        }
    }

    fn table(&self) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|c| c.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let mut l = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    l.push_str("  ");
                }
                let _ = write!(l, "{cell:<w$}");
            }
            out.push_str(l.trim_end());
            out.push('\n');
        };
        let header: Vec<String> = self.columns.iter().map(|c| c.to_uppercase()).collect();
        line(&mut out, &header);
        for row in &self.rows {
            line(&mut out, row);
        }
        out
    }

    fn json_rows(&self) -> Vec<serde_json::Value> {
        self.rows
            .iter()
            .map(|row| {
                let obj = self
                    .columns
                    .iter()
                    .zip(row)
                    .map(|(k, v)| (k.clone(), json_value(v)))
                    .collect::<serde_json::Map<_, _>>();
                serde_json::Value::Object(obj)
            })
            .collect()
    }

    fn jsonl(&self) -> String {
        self.json_rows()
            .iter()
            .map(|row| format!("{row}\n"))
            .collect()
    }

    fn json(&self) -> String {
        let rows = self.json_rows();
        let mut s = serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".to_owned());
        s.push('\n');
        s
    }

    fn csv(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, cells: &[String]| {
            let quoted: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
            out.push_str(&quoted.join(","));
            out.push_str("\r\n");
        };
        line(&mut out, &self.columns);
        for row in &self.rows {
            line(&mut out, row);
        }
        out
    }
}

/// Numbers stay numbers in JSON so reports can be summed by tools.
fn json_value(v: &str) -> serde_json::Value {
    let canonical_number =
        !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && (v == "0" || !v.starts_with('0'));
    if canonical_number && let Ok(n) = v.parse::<u64>() {
        return serde_json::Value::from(n);
    }
    serde_json::Value::String(v.to_owned())
}

/// RFC 4180 quoting.
fn csv_field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::new(["model", "requests"]);
        r.push(vec!["claude-sonnet-5".into(), "12".into()]);
        r.push(vec!["a,\"b\"".into(), "007".into()]);
        r
    }

    #[test]
    fn csv_quotes_commas_and_quotes() {
        assert_eq!(
            sample().render(Format::Csv),
            "model,requests\r\nclaude-sonnet-5,12\r\n\"a,\"\"b\"\"\",007\r\n"
        );
    }

    #[test]
    fn json_keeps_counts_numeric_and_odd_strings_as_strings() {
        let v: serde_json::Value = serde_json::from_str(&sample().render(Format::Json)).unwrap();
        assert_eq!(v[0]["requests"], 12);
        assert_eq!(v[1]["requests"], "007");
    }

    #[test]
    fn table_aligns_columns() {
        let t = sample().render(Format::Table);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "MODEL            REQUESTS");
        assert_eq!(lines[1], "claude-sonnet-5  12");
    }
}
