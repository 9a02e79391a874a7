//! The codec of every generated client and server: tonic's prost codec with smaller
//! initial buffers.
//!
//! tonic gives each message stream an encode and a decode buffer of 8 KiB up front
//! (`BufferSettings::default`), kept for the stream's life. A control plane holds one
//! long-lived session stream per node, so those two buffers were 16 KiB of every
//! connected node's memory whatever the messages' size. Here they start at
//! [`BUFFER_SIZE`] and grow as a message needs (a buffer grows to the largest message it
//! has carried); the yield threshold (how much a stream encodes before it lets others run)
//! is tonic's.

use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial size of a stream's encode and of its decode buffer: a node's status or a
/// small desired state fits; anything larger grows the buffer.
pub const BUFFER_SIZE: usize = 1024;

/// tonic's own threshold (32 KiB): encoding yields once this much is buffered.
pub const YIELD_THRESHOLD: usize = 32 * 1024;

/// The settings both directions use.
pub fn buffer_settings() -> BufferSettings {
    BufferSettings::new(BUFFER_SIZE, YIELD_THRESHOLD)
}

/// [`ProstCodec`] with [`buffer_settings`] (named by `build.rs` as every service's codec).
#[derive(Debug, Clone)]
pub struct SmallBuffers<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for SmallBuffers<T, U> {
    fn default() -> Self {
        SmallBuffers(PhantomData)
    }
}

impl<T, U> Codec for SmallBuffers<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(buffer_settings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::codec::{Decoder, Encoder};

    #[test]
    fn both_directions_start_small() {
        // BufferSettings' fields are private; its Debug form shows them.
        let mut c = SmallBuffers::<crate::v1::NodeMessage, crate::v1::ControlMessage>::default();
        let want = format!("{:?}", buffer_settings());
        assert!(want.contains("buffer_size: 1024"), "{want}");
        assert!(want.contains("yield_threshold: 32768"), "{want}");
        assert_eq!(format!("{:?}", c.encoder().buffer_settings()), want);
        assert_eq!(format!("{:?}", c.decoder().buffer_settings()), want);
        assert_ne!(
            want,
            format!("{:?}", BufferSettings::default()),
            "smaller than tonic's default"
        );
    }
}
