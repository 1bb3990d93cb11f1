//! `merchants.csv`: every merchant of the run, biggest GMV first, with its
//! transactions, mobile share and the time it passed each threshold, for
//! merchants' account managers and for anyone who wants the data in a
//! spreadsheet.
//!
//! Columns: `rank,merchant_id,gmv_cny,mobile_gmv_cny,transactions,mobile_share`
//! then one `passed_cny_<threshold>_at` column per threshold (the `settled_at`
//! of the crossing transaction, empty if the merchant never passed it).

use crate::error::{OutputError, Role};
use crate::model::parse_fen;
use gmv_core::output::{share, Report};
use std::collections::HashMap;

/// The CSV text of every merchant in `run`.
pub fn merchants_csv(run: &Report) -> Result<Vec<u8>, OutputError> {
    let thresholds = run
        .figures
        .thresholds
        .iter()
        .enumerate()
        .map(|(i, t)| parse_fen(&t.cny, Role::Run, format!("thresholds[{i}].cny")))
        .collect::<Result<Vec<_>, _>>()?;
    // merchant → the crossing time in each threshold's column.
    let mut crossed: HashMap<&str, Vec<Option<&str>>> = HashMap::new();
    for (i, a) in run.alerts.iter().enumerate() {
        let fen = parse_fen(
            &a.threshold_cny,
            Role::Run,
            format!("alerts[{i}].threshold_cny"),
        )?;
        if let Some(column) = thresholds.iter().position(|&t| t == fen) {
            crossed
                .entry(a.merchant_id.as_str())
                .or_insert_with(|| vec![None; thresholds.len()])[column] =
                Some(a.settled_at.as_str());
        }
    }

    let mut out = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "rank",
        "merchant_id",
        "gmv_cny",
        "mobile_gmv_cny",
        "transactions",
        "mobile_share",
    ]
    .map(String::from)
    .to_vec();
    header.extend(run.figures.thresholds.iter().map(|t| {
        let whole = t.cny.strip_suffix(".00").unwrap_or(&t.cny);
        format!("passed_cny_{whole}_at")
    }));
    out.write_record(&header).map_err(csv_error)?;
    for (i, m) in run.merchant_list.iter().enumerate() {
        let gmv = parse_fen(&m.gmv_cny, Role::Run, format!("merchant_list[{i}].gmv_cny"))?;
        let mobile = parse_fen(
            &m.mobile_gmv_cny,
            Role::Run,
            format!("merchant_list[{i}].mobile_gmv_cny"),
        )?;
        let mut row = vec![
            (i + 1).to_string(),
            m.merchant_id.clone(),
            m.gmv_cny.clone(),
            m.mobile_gmv_cny.clone(),
            m.transactions.to_string(),
            format!("{:.4}", share(mobile, gmv)),
        ];
        let times = crossed.get(m.merchant_id.as_str());
        row.extend(
            (0..thresholds.len()).map(|c| times.and_then(|t| t[c]).unwrap_or_default().to_string()),
        );
        out.write_record(&row).map_err(csv_error)?;
    }
    out.into_inner().map_err(|e| OutputError::Internal {
        what: "merchants.csv",
        message: e.to_string(),
    })
}

fn csv_error(e: csv::Error) -> OutputError {
    OutputError::Internal {
        what: "merchants.csv",
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_merchant_has_a_row_with_its_crossing_times() {
        let mut records = Vec::new();
        for (txn, m, amount, channel) in [
            ("t1", "m-a", "60000000.00", "mobile"),
            ("t2", "m-a", "60000000.00", "pc"),
            ("t3", "m-b", "10.00", "pc"),
        ] {
            let e = format!(
                r#"{{"txn_id":"{txn}","merchant_id":"{m}","amount":"{amount}","channel":"{channel}","settled_at":"2017-11-11T08:00:0{}+08:00"}}"#,
                &txn[1..]
            );
            records.push(e);
        }
        let report = crate::test_support::report_of(&records);
        let text = String::from_utf8(merchants_csv(&report).unwrap()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "rank,merchant_id,gmv_cny,mobile_gmv_cny,transactions,mobile_share,\
                 passed_cny_100000000_at,passed_cny_500000000_at,passed_cny_1000000000_at",
                "1,m-a,120000000.00,60000000.00,2,0.5000,2017-11-11T08:00:02+08:00,,",
                "2,m-b,10.00,0.00,1,0.0000,,,",
            ]
        );
    }
}
