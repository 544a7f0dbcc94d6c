//! The codec of this server's services: prost's, except that a request that is not valid
//! protobuf (a string that is not UTF-8, a truncated field, a wrong wire type) is the client's
//! fault and answers INVALID_ARGUMENT, where tonic-prost answers INTERNAL for any decode error
//! (its codec also serves clients, for which a response that does not decode is no fault of
//! theirs). build.rs generates the servers, and only them, with this codec.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

use super::status;

/// Encodes responses `T` as prost does; decodes requests `U`, a failure being INVALID_ARGUMENT.
#[derive(Debug)]
pub struct RequestCodec<T, U> {
    types: PhantomData<(T, U)>,
}

impl<T, U> Default for RequestCodec<T, U> {
    fn default() -> Self {
        Self { types: PhantomData }
    }
}

impl<T, U> Codec for RequestCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = RequestDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RequestDecoder { message: PhantomData }
    }
}

/// Decodes one request message `U`.
#[derive(Debug)]
pub struct RequestDecoder<U> {
    message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for RequestDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|error| status::undecodable_request(&error))
    }
}
