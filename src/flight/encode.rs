//! Encoding record batches as Flight data, with per-batch app_metadata.

use arrow::datatypes::Schema;
use arrow::error::ArrowError;
use arrow::ipc::writer::{
    CompressionContext, DictionaryTracker, IpcDataGenerator, IpcWriteOptions,
};
use arrow::record_batch::RecordBatch;
use arrow_flight::{FlightData, SchemaAsIpc};
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
    pub fn schema(&self, schema: &Schema) -> FlightData {
        SchemaAsIpc::new(schema, &self.options).into()
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
