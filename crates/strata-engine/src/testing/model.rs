//! [`Model`]: what the engine must return, computed without the engine.

use std::collections::BTreeMap;
use std::time::Duration;

use strata_request::{ColumnDataType, Value};

use super::{CLOCK_START_MILLIS, Key, Op, Row, TableSchema};

/// The reference model of a [`TestEngine`](super::TestEngine)'s regions: per region, a
/// last-write-wins map from [`Key`] to field values (puts insert or replace, deletes
/// remove, truncates clear, drops remove the region), the fields added since creation,
/// and the region's TTL against the model's own clock (moved by [`Op::AdvanceClock`]
/// exactly as the engine's). Flushes, compactions, reopens and restarts change nothing a
/// reader can see, so they change nothing here.
///
/// See the [module docs](super) for the one thing it cannot decide (rows a longer TTL
/// makes visible again) and how [`rows`](Self::rows) and [`settled`](Self::settled) leave
/// it out.
#[derive(Debug, Clone)]
pub struct Model {
    schema: TableSchema,
    now_millis: i64,
    regions: Vec<Option<RegionModel>>,
}

/// One existing region.
#[derive(Debug, Clone, Default)]
struct RegionModel {
    /// Fields added by [`Op::AddField`], in order.
    added: Vec<(String, ColumnDataType)>,
    rows: BTreeMap<Key, Vec<Option<Value>>>,
    ttl: Option<Duration>,
    /// The highest TTL cutoff the region ever had (in its time unit), since it was
    /// created or last truncated: rows below it may have been compacted away.
    ever_cutoff: Option<i64>,
}

impl Model {
    /// `regions` empty regions of `schema`, the clock at [`CLOCK_START_MILLIS`]: what a
    /// [`TestEngine`](super::TestEngine) built with the same schema and region count
    /// starts as ([`TestEngine::model`](super::TestEngine::model) builds it).
    pub fn new(schema: TableSchema, regions: usize) -> Self {
        Self {
            schema,
            now_millis: CLOCK_START_MILLIS,
            regions: vec![Some(RegionModel::default()); regions],
        }
    }

    /// The schema regions are created with.
    pub fn schema(&self) -> &TableSchema {
        &self.schema
    }

    /// How many regions the model has (existing or dropped).
    pub fn regions(&self) -> usize {
        self.regions.len()
    }

    /// The model's clock, in milliseconds since the epoch.
    pub fn now_millis(&self) -> i64 {
        self.now_millis
    }

    /// Whether region `region` exists (created and not dropped since).
    pub fn exists(&self, region: usize) -> bool {
        self.region(region).is_some()
    }

    /// The TTL of region `region`, if it exists and has one.
    pub fn ttl(&self, region: usize) -> Option<Duration> {
        self.region(region).and_then(|r| r.ttl)
    }

    /// The names of region `region`'s fields: the schema's, then those added (empty for a
    /// region that does not exist).
    pub fn field_names(&self, region: usize) -> Vec<String> {
        let Some(state) = self.region(region) else {
            return Vec::new();
        };
        self.schema
            .fields
            .iter()
            .map(|f| f.name.clone())
            .chain(state.added.iter().map(|(name, _)| name.clone()))
            .collect()
    }

    /// Applies `op` (see [`Op`] for what an operation on a missing region does: nothing).
    pub fn apply(&mut self, op: &Op) {
        if let Op::AdvanceClock { by } = op {
            let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
            self.now_millis = self.now_millis.saturating_add(by);
        }
        if let Op::Create { region } = op
            && let Some(slot @ None) = self.regions.get_mut(*region)
        {
            *slot = Some(RegionModel::default());
        }
        let columns = self.column_names();
        if let Some(slot) = op.region().and_then(|r| self.regions.get_mut(r)) {
            match (op, slot.as_mut()) {
                (Op::Drop { .. }, _) => *slot = None,
                (_, Some(state)) => state.apply(op, &columns),
                (_, None) => {}
            }
        }
        let now = self.now_millis;
        let unit = self.schema.time_unit;
        for state in self.regions.iter_mut().flatten() {
            if let Some(cutoff) = cutoff(unit, now, state.ttl) {
                state.ever_cutoff = Some(state.ever_cutoff.map_or(cutoff, |e| e.max(cutoff)));
            }
        }
    }

    /// The rows region `region` must return now, in the engine's order (tags, then
    /// timestamp; nulls first): those alive under its TTL, less those the model cannot
    /// decide. Empty for a region that does not exist.
    pub fn rows(&self, region: usize) -> Vec<Row> {
        let Some(state) = self.region(region) else {
            return Vec::new();
        };
        let from = state.ever_cutoff.unwrap_or(i64::MIN);
        state
            .rows
            .iter()
            .filter(|(key, _)| key.ts >= from)
            .map(|(key, fields)| Row {
                key: key.clone(),
                fields: fields.clone(),
            })
            .collect()
    }

    /// `rows` (what the engine returned for region `region`) less the rows whose presence
    /// the model cannot decide: those expired once but alive under the current TTL. Rows
    /// past the current TTL stay, so returning one is a mismatch.
    pub fn settled(&self, region: usize, mut rows: Vec<Row>) -> Vec<Row> {
        let Some(state) = self.region(region) else {
            return rows;
        };
        let cutoff = cutoff(self.schema.time_unit, self.now_millis, state.ttl);
        let cutoff = cutoff.unwrap_or(i64::MIN);
        let ever = state.ever_cutoff.unwrap_or(i64::MIN);
        rows.retain(|row| !(row.key.ts >= cutoff && row.key.ts < ever));
        rows
    }

    fn region(&self, region: usize) -> Option<&RegionModel> {
        self.regions.get(region).and_then(Option::as_ref)
    }

    /// Every column name of the schema (before fields are added).
    fn column_names(&self) -> Vec<String> {
        let schema = &self.schema;
        schema
            .tags
            .iter()
            .chain(std::iter::once(&schema.time_index))
            .chain(schema.fields.iter().map(|f| &f.name))
            .cloned()
            .collect()
    }
}

impl RegionModel {
    /// Applies an operation on this (existing) region; `columns` are the schema's names.
    fn apply(&mut self, op: &Op, columns: &[String]) {
        match op {
            Op::Put { rows, .. } => {
                for row in rows {
                    let mut fields = row.fields.clone();
                    fields.resize(fields.len() + self.added.len(), None);
                    self.rows.insert(row.key.clone(), fields);
                }
            }
            Op::Delete { keys, .. } => {
                for key in keys {
                    self.rows.remove(key);
                }
            }
            Op::Truncate { .. } => {
                self.rows.clear();
                self.ever_cutoff = None;
            }
            Op::AddField {
                name, data_type, ..
            } => {
                let taken = columns.contains(name) || self.added.iter().any(|(n, _)| n == name);
                if !taken {
                    self.added.push((name.clone(), *data_type));
                    for fields in self.rows.values_mut() {
                        fields.push(None);
                    }
                }
            }
            Op::SetTtl { ttl, .. } => self.ttl = *ttl,
            Op::Flush { .. }
            | Op::Compact { .. }
            | Op::Reopen { .. }
            | Op::Restart
            | Op::AdvanceClock { .. }
            | Op::Drop { .. }
            | Op::Create { .. } => {}
        }
    }
}

/// The first timestamp (in `unit`) alive at `now_millis` under `ttl`, as the engine
/// computes it; `None` without a TTL.
fn cutoff(unit: ColumnDataType, now_millis: i64, ttl: Option<Duration>) -> Option<i64> {
    let ttl = i64::try_from(ttl?.as_millis()).unwrap_or(i64::MAX);
    unit.timestamp_from_millis(now_millis.saturating_sub(ttl))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::tests::{key, put};

    fn values(model: &Model, region: usize) -> Vec<(i64, Vec<Option<Value>>)> {
        model
            .rows(region)
            .into_iter()
            .map(|r| (r.key.ts, r.fields))
            .collect()
    }

    #[test]
    fn the_last_write_of_a_key_wins_and_deletes_remove_it() {
        let mut model = Model::new(TableSchema::host_ts_v(), 2);
        model.apply(&put(0, &[("a", 1, 10), ("a", 1, 11), ("b", 2, 20)]));
        model.apply(&put(0, &[("b", 2, 21)]));
        assert_eq!(
            values(&model, 0),
            vec![
                (1, vec![Some(Value::Int64(11))]),
                (2, vec![Some(Value::Int64(21))])
            ]
        );
        model.apply(&Op::Delete {
            region: 0,
            keys: vec![key("a", 1), key("a", 1), key("z", 9)],
        });
        assert_eq!(values(&model, 0), vec![(2, vec![Some(Value::Int64(21))])]);
        assert!(model.rows(1).is_empty());
    }

    #[test]
    fn added_fields_read_null_and_a_taken_name_adds_nothing() {
        let mut model = Model::new(TableSchema::host_ts_v(), 1);
        model.apply(&put(0, &[("a", 1, 10)]));
        for name in ["x", "x", "v", "host"] {
            model.apply(&Op::AddField {
                region: 0,
                name: name.into(),
                data_type: ColumnDataType::Boolean,
            });
        }
        assert_eq!(model.field_names(0), vec!["v", "x"]);
        model.apply(&put(0, &[("b", 1, 20)]));
        assert!(
            model
                .rows(0)
                .iter()
                .all(|r| r.fields.len() == 2 && r.fields[1].is_none())
        );
    }

    #[test]
    fn rows_past_the_ttl_go_and_rows_expired_once_are_undecided() {
        let mut model = Model::new(TableSchema::host_ts_v(), 1);
        model.apply(&put(0, &[("a", 0, 1), ("a", 5, 2), ("a", 9, 3)]));
        // Cutoff 1_000 - 995 = 5: ts 0 expires.
        model.apply(&Op::SetTtl {
            region: 0,
            ttl: Some(Duration::from_millis(995)),
        });
        assert_eq!(model.rows(0).len(), 2);
        model.apply(&Op::AdvanceClock {
            by: Duration::from_millis(2),
        });
        // Cutoff 7: only ts 9 is alive.
        assert_eq!(model.rows(0).len(), 1);
        model.apply(&Op::SetTtl {
            region: 0,
            ttl: None,
        });
        // Ts 0 and 5 may or may not come back: undecided, so neither side has them.
        assert_eq!(model.rows(0).len(), 1);
        let engine = vec![
            Row {
                key: key("a", 0),
                fields: vec![Some(Value::Int64(1))],
            },
            model.rows(0)[0].clone(),
        ];
        assert_eq!(model.settled(0, engine), model.rows(0));
        // A truncate forgets the old cutoff.
        model.apply(&Op::Truncate { region: 0 });
        model.apply(&put(0, &[("a", 0, 4)]));
        assert_eq!(model.rows(0).len(), 1);
    }

    #[test]
    fn a_returned_row_past_the_ttl_is_not_settled_away() {
        let mut model = Model::new(TableSchema::host_ts_v(), 1);
        model.apply(&Op::SetTtl {
            region: 0,
            ttl: Some(Duration::from_millis(995)),
        });
        let expired = Row {
            key: key("a", 0),
            fields: vec![None],
        };
        assert_eq!(model.settled(0, vec![expired.clone()]), vec![expired]);
    }

    #[test]
    fn drops_remove_a_region_and_creates_bring_it_back_empty() {
        let mut model = Model::new(TableSchema::host_ts_v(), 1);
        model.apply(&put(0, &[("a", 1, 10)]));
        model.apply(&Op::Drop { region: 0 });
        assert!(!model.exists(0));
        model.apply(&put(0, &[("a", 2, 10)]));
        assert!(model.rows(0).is_empty());
        model.apply(&Op::Create { region: 0 });
        assert!(model.exists(0));
        assert!(model.rows(0).is_empty());
    }
}
