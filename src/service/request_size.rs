//! The request size limit, measured on the bytes received: a tower layer that reads the length
//! prefix of each gRPC message as the request body arrives and refuses a message longer than
//! the limit before any of it is decoded.
//!
//! Why here and not in a handler or in tonic: a handler sees the decoded message, whose
//! re-encoded size leaves out unknown fields (a 17 MiB request passed a 16 MiB check), and
//! tonic's own `max_decoding_message_size` answers OUT_OF_RANGE, not RESOURCE_EXHAUSTED
//! (DESIGN.md §4). The prefix is the size the client sent, known after five bytes, so a request
//! far over the limit costs no more than one just over it.

use std::pin::Pin;
use std::task::{Context, Poll};

use http_body::{Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

use super::status;

/// Refuses every gRPC request message longer than `max` bytes with RESOURCE_EXHAUSTED.
#[derive(Clone, Copy, Debug)]
pub struct RequestSizeLayer {
    max: usize,
}

impl RequestSizeLayer {
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl<S> tower_layer::Layer<S> for RequestSizeLayer {
    type Service = RequestSize<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestSize { inner, max: self.max }
    }
}

/// The service of [`RequestSizeLayer`]: `inner`, with each request body checked as it arrives.
#[derive(Clone, Debug)]
pub struct RequestSize<S> {
    inner: S,
    max: usize,
}

impl<S> tower_service::Service<http::Request<Body>> for RequestSize<S>
where
    S: tower_service::Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let max = self.max;
        self.inner.call(request.map(|body| Body::new(MessageLimit::new(body, max))))
    }
}

/// Length of a gRPC message prefix: a compression flag byte and the length (u32, big-endian).
const PREFIX_BYTES: usize = 5;

/// A request body that follows the gRPC framing (prefix, message, prefix, message, …) and
/// fails, in place of the data that holds it, at the first prefix announcing more than `max`
/// bytes. tonic reports a body error that is a `Status` as that status.
struct MessageLimit {
    inner: Body,
    max: usize,
    prefix: [u8; PREFIX_BYTES],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    message_left: u64,
    refused: bool,
}

impl MessageLimit {
    fn new(inner: Body, max: usize) -> Self {
        Self { inner, max, prefix: [0; PREFIX_BYTES], prefix_len: 0, message_left: 0, refused: false }
    }

    /// Follows the framing through `data`; the status if a prefix in it announces too much.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.message_left > 0 {
                let n = data.len().min(usize::try_from(self.message_left).unwrap_or(usize::MAX));
                self.message_left -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = data.len().min(PREFIX_BYTES - self.prefix_len);
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len == PREFIX_BYTES {
                self.prefix_len = 0;
                let length = u32::from_be_bytes(self.prefix[1..].try_into().expect("four bytes"));
                if u64::from(length) > self.max as u64 {
                    return Err(status::request_too_large(u64::from(length), self.max));
                }
                self.message_left = u64::from(length);
            }
        }
        Ok(())
    }
}

impl http_body::Body for MessageLimit {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Status>>> {
        if self.refused {
            return Poll::Ready(None);
        }
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame
            && let Some(data) = frame.data_ref()
            && let Err(refusal) = self.scan(data)
        {
            self.refused = true;
            return Poll::Ready(Some(Err(refusal)));
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.refused || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(length: u32) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes
    }

    /// Feeds `chunks` to a limit of `max` bytes; the index of the chunk refused, if any.
    fn refused_at(max: usize, chunks: &[Vec<u8>]) -> Option<usize> {
        let mut limit = MessageLimit::new(Body::empty(), max);
        chunks.iter().position(|chunk| limit.scan(chunk).is_err())
    }

    #[test]
    fn a_message_prefix_over_the_limit_is_refused_wherever_the_chunks_cut_it() {
        let mut two_messages = prefix(3);
        two_messages.extend_from_slice(b"abc");
        two_messages.extend(prefix(10));
        two_messages.extend_from_slice(&[7; 10]);
        assert_eq!(refused_at(10, std::slice::from_ref(&two_messages)), None);
        // Split at every byte: the framing is followed across chunks.
        let bytes: Vec<Vec<u8>> = two_messages.iter().map(|b| vec![*b]).collect();
        assert_eq!(refused_at(10, &bytes), None);
        assert_eq!(refused_at(9, &bytes), Some(12), "the last byte of the second prefix");
        // A message body that looks like a prefix is not read as one.
        let mut body_like_prefix = prefix(5);
        body_like_prefix.extend(prefix(u32::MAX));
        assert_eq!(refused_at(5, &[body_like_prefix]), None);
        assert_eq!(refused_at(5, &[prefix(6)]), Some(0));
        assert_eq!(refused_at(16 << 20, &[prefix(70 << 20)]), Some(0));
    }

    #[test]
    fn a_refusal_is_resource_exhausted() {
        let mut limit = MessageLimit::new(Body::empty(), 4);
        let refusal = limit.scan(&prefix(5)).unwrap_err();
        assert_eq!(refusal.code(), tonic::Code::ResourceExhausted);
        assert!(refusal.message().contains('5') && refusal.message().contains('4'), "{}", refusal.message());
    }
}
