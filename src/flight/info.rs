//! GetFlightInfo and ListFlights.

use arrow::datatypes::Schema;
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, Ticket};

use super::served::Served;
use super::status::{status_batch, status_json};
use crate::error::{Error, Result};
use crate::membership::report::caught_up_replicas;
use crate::raft::leader_location;
use crate::table::TableName;
use crate::wire::{ReadTicket, STATUS_TICKET};

/// Flight locations of the replicas that serve reads: the members gossip reports alive and
/// caught up.
fn replica_locations(ctx: &Served) -> Vec<String> {
    let metrics = crate::raft::metrics(&ctx.raft);
    let alive = caught_up_replicas(&ctx.member_node());
    metrics
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| alive.contains(id))
        .map(|(_, n)| n.flight_location())
        .collect()
}

fn with_schema(info: FlightInfo, schema: &Schema) -> Result<FlightInfo> {
    info.try_with_schema(schema)
        .map_err(|e| Error::internal("encode schema", e))
}

pub fn table_info(ctx: &Served, table: &TableName) -> Result<FlightInfo> {
    let info = ctx
        .state
        .table(table)
        .ok_or_else(|| Error::NotFound(format!("table {table} not found")))?;
    let ticket = ReadTicket {
        table: table.to_string(),
        ..Default::default()
    };
    let ticket = serde_json::to_vec(&ticket).map_err(|e| Error::internal("ticket", e))?;
    let mut endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    for location in replica_locations(ctx) {
        endpoint = endpoint.with_location(location);
    }
    let flight = FlightInfo::new()
        .with_descriptor(FlightDescriptor::new_path(vec![table.to_string()]))
        .with_endpoint(endpoint)
        .with_total_records(info.counts.rows as i64)
        .with_total_bytes(info.counts.bytes as i64)
        .with_ordered(true);
    with_schema(flight, &info.schema)
}

/// The table a GetFlightInfo descriptor names, if it names one (`[TABLE]`).
pub fn descriptor_table(descriptor: &FlightDescriptor) -> Option<&str> {
    match descriptor.path.as_slice() {
        [one] if one != "streaming_write" && one != "status" => Some(one.as_str()),
        _ => None,
    }
}

pub fn get_flight_info(ctx: &Served, descriptor: &FlightDescriptor) -> Result<FlightInfo> {
    let path: Vec<&str> = descriptor.path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["streaming_write"] | ["streaming_write", _] => {
            let leader = leader_location(&ctx.raft).ok_or_else(|| {
                Error::Unavailable("no leader is known (election in progress): retry".into())
            })?;
            let endpoint = FlightEndpoint::new().with_location(leader);
            Ok(FlightInfo::new()
                .with_descriptor(descriptor.clone())
                .with_endpoint(endpoint))
        }
        ["status"] => {
            let status = status_json(ctx);
            let batch = status_batch(&status)?;
            let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(STATUS_TICKET.to_vec()));
            let info = FlightInfo::new()
                .with_descriptor(descriptor.clone())
                .with_endpoint(endpoint)
                .with_total_records(1)
                .with_app_metadata(status.to_string());
            with_schema(info, &batch.schema())
        }
        [table] => {
            let table = TableName::parse(table).map_err(Error::from)?;
            table_info(ctx, &table)
        }
        _ => Err(Error::InvalidArgument(format!(
            "bad descriptor path {path:?}: expected [TABLE], [\"streaming_write\"] or [\"status\"]"
        ))),
    }
}

pub fn list_flights(ctx: &Served) -> Result<Vec<FlightInfo>> {
    ctx.state
        .tables()
        .iter()
        .map(|(name, _)| table_info(ctx, name))
        .collect()
}
