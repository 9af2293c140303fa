//! The codec every generated client and server uses: prost's encoding, with decoding
//! failures reported as what they are. prost refuses messages nested more than 100 levels
//! deep ("recursion limit reached"); tonic would answer that, like any malformed message,
//! INTERNAL. Here nesting is INVALID_ARGUMENT `FIELD_TOO_DEEP` and any other undecodable
//! message INVALID_ARGUMENT `MALFORMED_MESSAGE`.
use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{BufferSettings, DecodeBuf};
use tonic::{Code, Status};
use tonic_prost::ProstEncoder;

use crate::status::status;

#[derive(Debug, Clone)]
pub struct Codec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(PhantomData)
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = Decoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        Decoder(PhantomData)
    }
}

#[derive(Debug, Clone)]
pub struct Decoder<U>(PhantomData<U>);

impl<U: Message + Default> tonic::codec::Decoder for Decoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| decode_failure(&e))
    }
}

/// The status of a message prost could not decode.
pub fn decode_failure(e: &prost::DecodeError) -> Status {
    let text = e.to_string();
    if text.contains("recursion limit reached") {
        let max = promotion_core::validate::MAX_FIELD_DEPTH;
        return status(
            Code::InvalidArgument,
            "FIELD_TOO_DEEP",
            format!("the message nests too deeply to decode; field values nest at most {max} levels"),
            [("field", "fields".to_string())],
        );
    }
    status(Code::InvalidArgument, "MALFORMED_MESSAGE", format!("the message cannot be decoded: {text}"), [])
}
