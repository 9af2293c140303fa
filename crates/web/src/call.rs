//! Calling one RPC of a gRPC handle with an already encoded message: the bytes go through
//! the server's own layers and handlers, and come back as bytes or a status.
use std::net::SocketAddr;

use bytes::{Buf, BufMut};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpConnectInfo;
use tonic::Status;

use promotion_serving::GrpcHandle;

/// A call's message, its metadata (token, request id, trace) and who is calling.
pub struct Outgoing<'a> {
    pub path: &'a str,
    pub message: Vec<u8>,
    pub metadata: MetadataMap,
    pub peer: SocketAddr,
    pub max_message_bytes: usize,
}

/// A unary call: the response message's bytes.
pub async fn unary(handle: &GrpcHandle, call: Outgoing<'_>) -> Result<Vec<u8>, Status> {
    let (mut grpc, request, path) = prepare(handle, call).await?;
    Ok(grpc.unary(request, path, RawCodec).await?.into_inner())
}

/// A server-streaming call: every message of the stream, at most `max_messages`.
pub async fn server_streaming(
    handle: &GrpcHandle,
    call: Outgoing<'_>,
    max_messages: usize,
) -> Result<Vec<Vec<u8>>, Status> {
    let (mut grpc, request, path) = prepare(handle, call).await?;
    let mut stream = grpc.server_streaming(request, path, RawCodec).await?.into_inner();
    let mut messages = vec![];
    while let Some(message) = stream.message().await? {
        if messages.len() == max_messages {
            return Err(promotion_api::status::status(
                tonic::Code::ResourceExhausted,
                "LIMIT_EXCEEDED",
                format!("the answer has more than {max_messages} parts; use the gRPC stream"),
                [("limit", "http_stream_messages".to_string()), ("max", max_messages.to_string())],
            ));
        }
        messages.push(message);
    }
    Ok(messages)
}

type Prepared = (tonic::client::Grpc<GrpcHandle>, tonic::Request<Vec<u8>>, http::uri::PathAndQuery);

async fn prepare(handle: &GrpcHandle, call: Outgoing<'_>) -> Result<Prepared, Status> {
    let path = http::uri::PathAndQuery::try_from(call.path).map_err(|e| Status::internal(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(handle.clone())
        .max_decoding_message_size(call.max_message_bytes)
        .max_encoding_message_size(call.max_message_bytes);
    grpc.ready().await.map_err(|e| Status::unavailable(format!("the service is not ready: {e}")))?;
    let mut request = tonic::Request::new(call.message);
    *request.metadata_mut() = call.metadata;
    // The HTTP caller's address, where a gRPC handler reads its peer (the login throttle).
    request.extensions_mut().insert(TcpConnectInfo { local_addr: None, remote_addr: Some(call.peer) });
    Ok((grpc, request, path))
}

/// Messages as bytes, already encoded (or still to decode) by the transcoder.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}
