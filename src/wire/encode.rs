//! Encoding record batches as Flight data, with per-batch app_metadata.

use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use arrow::ipc::writer::{
    CompressionContext, DictionaryTracker, IpcDataGenerator, IpcWriteOptions,
};
use arrow::record_batch::RecordBatch;
use arrow_flight::FlightData;
use bytes::Bytes;

pub struct BatchEncoder {
    generator: IpcDataGenerator,
    tracker: DictionaryTracker,
    compression: CompressionContext,
    options: IpcWriteOptions,
}

impl Default for BatchEncoder {
    fn default() -> Self {
        Self {
            generator: IpcDataGenerator::default(),
            tracker: DictionaryTracker::new(false),
            compression: CompressionContext::default(),
            options: IpcWriteOptions::default(),
        }
    }
}

impl BatchEncoder {
    /// An encoder writing with `options` (compression, for one).
    pub fn with_options(options: IpcWriteOptions) -> Self {
        Self {
            options,
            ..Self::default()
        }
    }

    /// The schema message. It goes through the dictionary tracker, which gives each
    /// dictionary column the id its batches' dictionaries are sent under.
    pub fn schema(&mut self, schema: &Schema) -> FlightData {
        self.generator
            .schema_to_bytes_with_dictionary_tracker(schema, &mut self.tracker, &self.options)
            .into()
    }

    /// The messages of one batch (dictionaries first), the batch carrying `app_metadata`.
    pub fn batch(
        &mut self,
        batch: &RecordBatch,
        app_metadata: Bytes,
    ) -> Result<Vec<FlightData>, ArrowError> {
        let (dictionaries, encoded) = self.generator.encode(
            batch,
            &mut self.tracker,
            &self.options,
            &mut self.compression,
        )?;
        let mut out: Vec<FlightData> = dictionaries.into_iter().map(Into::into).collect();
        out.push(FlightData::from(encoded).with_app_metadata(app_metadata));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::DictionaryArray;
    use arrow::datatypes::Int32Type;

    use super::*;

    #[test]
    fn dictionary_batches_encode_one_after_another() {
        let mut encoder = BatchEncoder::default();
        for words in [vec!["a", "b"], vec!["c"]] {
            let kinds: DictionaryArray<Int32Type> = words.into_iter().collect();
            let batch = RecordBatch::try_from_iter([("kind", Arc::new(kinds) as _)]).unwrap();
            encoder.schema(&batch.schema());
            let messages = encoder.batch(&batch, Bytes::new()).unwrap();
            assert_eq!(messages.len(), 2, "a dictionary, then the batch");
        }
    }
}
