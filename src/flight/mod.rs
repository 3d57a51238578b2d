//! The public Arrow Flight service (DESIGN §4).

mod ack_batch;
mod actions;
pub mod auth;
mod do_get;
mod do_write;
pub mod drain;
mod durability_status;
#[cfg(test)]
mod fuzz;
mod info;
pub(crate) mod members;
pub mod peer_requests;
mod served;
mod status;
mod ticket;
pub(crate) mod tiering;

use std::sync::Arc;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaAsIpc, SchemaResult, Ticket,
};
use futures::stream::BoxStream;
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

pub use ack_batch::ack_batch;
pub use actions::ACTIONS;
pub use served::Served;

use self::auth::Guard;
use self::drain::Drain;
use crate::auth::{Authenticator, Caller, Right};
use crate::error::Error;

pub struct ArkaFlight {
    ctx: Arc<Served>,
    /// `None` when the node has no auth file.
    auth: Option<Arc<Authenticator>>,
    guard: Guard,
    drain: Drain,
}

impl ArkaFlight {
    pub fn new(
        ctx: Arc<Served>,
        auth: Option<Arc<Authenticator>>,
        guard: Guard,
        drain: Drain,
    ) -> Self {
        Self {
            ctx,
            auth,
            guard,
            drain,
        }
    }

    /// The caller, if it has `right` and, when the call names a table, a grant for it.
    /// `target` names what the call is about in the audit log.
    fn require<T>(
        &self,
        request: &Request<T>,
        right: Right,
        action: &str,
        target: &str,
        table: Option<&str>,
    ) -> Result<Caller, Status> {
        let caller = self.guard.require(request, right, action, target)?;
        if let Some(table) = table {
            self.guard.table(request, &caller, action, table)?;
        }
        Ok(caller)
    }

    /// The caller, if it may read what `descriptor` names.
    fn require_read_of(
        &self,
        request: &Request<FlightDescriptor>,
        action: &str,
    ) -> Result<Caller, Status> {
        let table = info::descriptor_table(request.get_ref());
        self.require(request, Right::Read, action, table.unwrap_or(""), table)
    }
}

type Stream<T> = BoxStream<'static, Result<T, Status>>;

#[tonic::async_trait]
impl FlightService for ArkaFlight {
    type HandshakeStream = Stream<HandshakeResponse>;
    type ListFlightsStream = Stream<FlightInfo>;
    type DoGetStream = Stream<FlightData>;
    type DoPutStream = Stream<PutResult>;
    type DoActionStream = Stream<arrow_flight::Result>;
    type ListActionsStream = Stream<ActionType>;
    type DoExchangeStream = Stream<FlightData>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        self.drain.admit()?;
        auth::handshake(self.auth.as_deref(), &self.guard, &request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        self.drain.admit()?;
        let caller = self
            .guard
            .require(&request, Right::Read, "ListFlights", "")?;
        let mut infos = info::list_flights(&self.ctx)?;
        infos.retain(|info| {
            let table = info
                .flight_descriptor
                .as_ref()
                .and_then(info::descriptor_table);
            table.is_none_or(|t| caller.may_use_table(t))
        });
        Ok(Response::new(
            futures::stream::iter(infos.into_iter().map(Ok)).boxed(),
        ))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.drain.admit()?;
        self.require_read_of(&request, "GetFlightInfo")?;
        let descriptor = request.into_inner();
        Ok(Response::new(info::get_flight_info(
            &self.ctx,
            &descriptor,
        )?))
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        self.drain.admit()?;
        self.require_read_of(&request, "PollFlightInfo")?;
        let descriptor = request.into_inner();
        let info = info::get_flight_info(&self.ctx, &descriptor)?;
        Ok(Response::new(
            PollInfo::new().with_info(info).with_descriptor(descriptor),
        ))
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        self.drain.admit()?;
        self.require_read_of(&request, "GetSchema")?;
        let info = info::get_flight_info(&self.ctx, &request.into_inner())?;
        let schema = info
            .try_decode_schema()
            .map_err(|e| Status::from(Error::internal("decode schema", e)))?;
        let options = arrow::ipc::writer::IpcWriteOptions::default();
        let result = SchemaAsIpc::new(&schema, &options).try_into().map_err(
            |e: arrow::error::ArrowError| Status::from(Error::internal("encode schema", e)),
        )?;
        Ok(Response::new(result))
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        self.drain.admit()?;
        // Parsed once; a bad ticket (too large, malformed) is refused with its reason only
        // once the caller is known to read at all.
        let parsed = ticket::parse(&request.get_ref().ticket);
        let table = match &parsed {
            Ok(ticket::Ticket::Read { ticket, .. }) => Some(ticket.table.as_str()),
            _ => None,
        };
        self.require(&request, Right::Read, "DoGet", table.unwrap_or(""), table)?;
        let span = tracing::info_span!("do_get", ticket = %String::from_utf8_lossy(&request.get_ref().ticket));
        let stream = do_get::do_get(self.ctx.clone(), parsed?)
            .instrument(span)
            .await?;
        Ok(Response::new(self.drain.until_ended(stream)))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        self.drain.admit()?;
        let grant = self.write_grant(&request, "DoPut")?;
        let metadata = request.metadata().clone();
        let stream = do_write::do_put(self.ctx.clone(), &metadata, request.into_inner(), grant)?;
        Ok(Response::new(self.drain.until_ended(stream)))
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        self.drain.admit()?;
        let grant = self.write_grant(&request, "DoExchange")?;
        let metadata = request.metadata().clone();
        let stream =
            do_write::do_exchange(self.ctx.clone(), &metadata, request.into_inner(), grant)?;
        Ok(Response::new(self.drain.until_ended(stream)))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        self.drain.admit()?;
        let (name, target) = {
            let action = request.get_ref();
            actions::check_sizes(&action.r#type, &action.body)?;
            (
                action.r#type.clone(),
                actions::target_of(&action.r#type, &action.body),
            )
        };
        let right = actions::right_of(&name);
        let table = actions::targets_a_table(&name).then_some(target.as_str());
        let caller = self.require(&request, right, &name, &target, table)?;
        let action = request.get_ref();
        let span = tracing::info_span!("do_action", action = %name, user = %caller.user);
        let result = actions::do_action(&self.ctx, &name, &action.body)
            .instrument(span)
            .await
            .map_err(Status::from);
        if right == Right::Admin {
            let outcome = result.as_ref().map(|_| ());
            self.guard
                .record_admin(&request, &caller, &name, &target, outcome);
        }
        let mut value = result?;
        if name == "list_tables" {
            actions::keep_granted_tables(&mut value, &caller);
        }
        let result = arrow_flight::Result::new(value.to_string());
        Ok(Response::new(futures::stream::iter([Ok(result)]).boxed()))
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        self.drain.admit()?;
        self.guard
            .require(&request, Right::Read, "ListActions", "")?;
        let types = actions::action_types();
        Ok(Response::new(
            futures::stream::iter(types.into_iter().map(Ok)).boxed(),
        ))
    }
}

impl ArkaFlight {
    /// Checks the write right now; the table grant is checked once the stream names its
    /// table (its first message).
    fn write_grant<T>(
        &self,
        request: &Request<T>,
        action: &'static str,
    ) -> Result<do_write::TableGrant, Status> {
        let caller = self.guard.require(request, Right::Write, action, "")?;
        let guard = self.guard.clone();
        let source = Guard::source(request);
        Ok(Box::new(move |table: &str| {
            guard
                .table_at(&source, &caller, action, table)
                .map_err(|refused| Error::PermissionDenied(refused.message().to_string()))
        }))
    }
}
