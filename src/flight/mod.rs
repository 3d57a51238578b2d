//! The public Arrow Flight service (DESIGN §4).

mod ack_batch;
mod actions;
mod do_get;
mod do_write;
mod durability_status;
pub mod encode;
mod info;
pub(crate) mod members;
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

pub use ack_batch::{ack_batch, ACK_SCHEMA};
pub use actions::ACTIONS;
pub use ticket::{ReadTicket, STATUS_TICKET};

use crate::context::NodeContext;
use crate::error::Error;

pub struct ArkaFlight {
    ctx: Arc<NodeContext>,
}

impl ArkaFlight {
    pub fn new(ctx: Arc<NodeContext>) -> Self {
        Self { ctx }
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
        _request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        // No authentication yet: an empty handshake succeeds.
        Ok(Response::new(futures::stream::empty().boxed()))
    }

    async fn list_flights(
        &self,
        _request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        let infos = info::list_flights(&self.ctx)?;
        Ok(Response::new(
            futures::stream::iter(infos.into_iter().map(Ok)).boxed(),
        ))
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
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
        let ticket = request.into_inner();
        let span = tracing::info_span!("do_get", ticket = %String::from_utf8_lossy(&ticket.ticket));
        let stream = do_get::do_get(self.ctx.clone(), &ticket.ticket)
            .instrument(span)
            .await?;
        Ok(Response::new(stream))
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        let metadata = request.metadata().clone();
        let stream = do_write::do_put(self.ctx.clone(), &metadata, request.into_inner())?;
        Ok(Response::new(stream))
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        let metadata = request.metadata().clone();
        let stream = do_write::do_exchange(self.ctx.clone(), &metadata, request.into_inner())?;
        Ok(Response::new(stream))
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        let action = request.into_inner();
        let span = tracing::info_span!("do_action", action = %action.r#type);
        let value = actions::do_action(&self.ctx, &action.r#type, &action.body)
            .instrument(span)
            .await?;
        let result = arrow_flight::Result::new(value.to_string());
        Ok(Response::new(futures::stream::iter([Ok(result)]).boxed()))
    }

    async fn list_actions(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        let types = actions::action_types();
        Ok(Response::new(
            futures::stream::iter(types.into_iter().map(Ok)).boxed(),
        ))
    }
}
