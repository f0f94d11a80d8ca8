//! The Raft message stream between members: length-prefixed Raft messages written straight to
//! the (TLS) connection, with no HTTP/2 or gRPC framing in between.
//!
//! Why not gRPC: a gRPC client stream passes every batch through three tasks (the per-peer
//! task, hyper's body pipe and the connection task) and the receiving side through two more
//! before Raft sees it. On this kind of machine each of those wake-ups costs about as much CPU
//! as the work it carries. Here the per-peer task writes to the socket itself, and the
//! connection's own task hands each message to Raft.
//!
//! It shares the peer port with gRPC (snapshots, lease forwarding and member info stay there):
//! over TLS a connection asks for it by the application protocol [`RAFT_ALPN`], in plaintext by
//! starting with [`PREFACE`]. A member that does not speak it (an older version) refuses the
//! protocol or answers something other than a reply, and the sender falls back to gRPC.
//!
//! ```text
//! sender → receiver:  PREFACE, cluster id (u64), sender id (u64), receiver id (u64)
//! receiver → sender:  "OK\n"  |  "NO\n", reason length (u16), reason (UTF-8)
//! sender → receiver:  { message length (u32), raft Message (protobuf) }*
//! ```
//! All integers are big-endian. Nothing else is sent back: a broken connection shows up as a
//! failed write on the sender, and TCP keepalive notices a peer that vanished.

use protobuf::{CodedOutputStream, Message as _};
use raft::eraftpb::Message;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// TLS application protocol of the Raft message stream.
pub const RAFT_ALPN: &[u8] = b"rampart-raft/1";

/// First bytes of the stream (they tell it apart from HTTP/2 on a plaintext peer port).
pub const PREFACE: &[u8] = b"RAMPART-RAFT/1\n";

const ACCEPTED: &[u8; 3] = b"OK\n";
const REFUSED: &[u8; 3] = b"NO\n";

/// Largest message accepted (Raft caps an append at `max_size_per_msg`; this only guards
/// against a corrupt length).
pub const MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// Who is connecting, and to whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub cluster_id: u64,
    pub from: u64,
    pub to: u64,
}

/// What the receiver said to a [`Hello`].
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    Accepted,
    Refused(String),
    /// Not a reply of this protocol: the member does not speak it.
    NotSpoken,
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the connection does not start with the Raft stream preface")]
    BadPreface,
    #[error("message of {0} bytes is larger than the limit of {MAX_FRAME_BYTES}")]
    FrameTooLarge(usize),
    #[error("bad raft message: {0}")]
    Decode(#[from] protobuf::ProtobufError),
}

pub async fn write_hello<W: AsyncWrite + Unpin>(w: &mut W, hello: Hello) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(PREFACE.len() + 24);
    buf.extend_from_slice(PREFACE);
    buf.extend_from_slice(&hello.cluster_id.to_be_bytes());
    buf.extend_from_slice(&hello.from.to_be_bytes());
    buf.extend_from_slice(&hello.to.to_be_bytes());
    w.write_all(&buf).await?;
    w.flush().await
}

pub async fn read_hello<R: AsyncRead + Unpin>(r: &mut R) -> Result<Hello, WireError> {
    let mut preface = [0u8; PREFACE.len()];
    r.read_exact(&mut preface).await?;
    if preface != PREFACE {
        return Err(WireError::BadPreface);
    }
    Ok(Hello {
        cluster_id: r.read_u64().await?,
        from: r.read_u64().await?,
        to: r.read_u64().await?,
    })
}

/// Answers a [`Hello`]: `Ok(())` accepts, `Err(reason)` refuses.
pub async fn write_reply<W: AsyncWrite + Unpin>(
    w: &mut W,
    verdict: Result<(), &str>,
) -> std::io::Result<()> {
    match verdict {
        Ok(()) => w.write_all(ACCEPTED).await?,
        Err(reason) => {
            let reason = &reason.as_bytes()[..reason.len().min(u16::MAX as usize)];
            let mut buf = Vec::with_capacity(5 + reason.len());
            buf.extend_from_slice(REFUSED);
            buf.extend_from_slice(&(reason.len() as u16).to_be_bytes());
            buf.extend_from_slice(reason);
            w.write_all(&buf).await?;
        }
    }
    w.flush().await
}

pub async fn read_reply<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Reply> {
    let mut head = [0u8; 3];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..]).await? {
            0 => return Ok(Reply::NotSpoken),
            n => got += n,
        }
    }
    if &head == ACCEPTED {
        return Ok(Reply::Accepted);
    }
    if &head != REFUSED {
        return Ok(Reply::NotSpoken);
    }
    let len = r.read_u16().await? as usize;
    let mut reason = vec![0u8; len];
    r.read_exact(&mut reason).await?;
    Ok(Reply::Refused(
        String::from_utf8_lossy(&reason).into_owned(),
    ))
}

/// Appends `m`, length first, to `out`.
pub fn encode_message(out: &mut Vec<u8>, m: &Message) -> protobuf::ProtobufResult<()> {
    let size = m.compute_size();
    out.extend_from_slice(&size.to_be_bytes());
    let mut stream = CodedOutputStream::vec(out);
    m.write_to_with_cached_sizes(&mut stream)?;
    stream.flush()
}

/// Reads the next message; `None` when the sender closed the stream between messages.
pub async fn read_message<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> Result<Option<Message>, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match r.read(&mut len[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into()),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(WireError::FrameTooLarge(len));
    }
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(Some(Message::parse_from_bytes(buf)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    fn append(index: u64, data: &[u8]) -> Message {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = 2;
        m.term = 3;
        m.index = index;
        let e = Entry {
            index: index + 1,
            data: data.to_vec().into(),
            ..Default::default()
        };
        m.entries = vec![e].into();
        m
    }

    #[tokio::test]
    async fn messages_come_out_as_they_went_in_and_the_end_is_clean() {
        let sent = vec![
            append(7, b"x"),
            append(8, &[0u8; 70_000]),
            Message::default(),
        ];
        let mut bytes = Vec::new();
        for m in &sent {
            encode_message(&mut bytes, m).unwrap();
        }
        let mut reader = &bytes[..];
        let mut buf = Vec::new();
        for m in &sent {
            assert_eq!(
                read_message(&mut reader, &mut buf).await.unwrap().as_ref(),
                Some(m)
            );
        }
        assert!(read_message(&mut reader, &mut buf).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_cut_message_or_an_absurd_length_is_an_error() {
        let mut bytes = Vec::new();
        encode_message(&mut bytes, &append(1, b"hello")).unwrap();
        let mut buf = Vec::new();
        let mut cut = &bytes[..bytes.len() - 1];
        assert!(matches!(
            read_message(&mut cut, &mut buf).await,
            Err(WireError::Io(_))
        ));
        let mut cut_in_length = &bytes[..2];
        assert!(read_message(&mut cut_in_length, &mut buf).await.is_err());
        let huge = (MAX_FRAME_BYTES as u32 + 1).to_be_bytes();
        assert!(matches!(
            read_message(&mut &huge[..], &mut buf).await,
            Err(WireError::FrameTooLarge(_))
        ));
    }

    #[tokio::test]
    async fn hello_and_replies_round_trip() {
        let hello = Hello {
            cluster_id: 0xdead,
            from: 1,
            to: 2,
        };
        let mut bytes = Vec::new();
        write_hello(&mut bytes, hello).await.unwrap();
        assert_eq!(read_hello(&mut &bytes[..]).await.unwrap(), hello);

        let mut yes = Vec::new();
        write_reply(&mut yes, Ok(())).await.unwrap();
        assert_eq!(read_reply(&mut &yes[..]).await.unwrap(), Reply::Accepted);
        let mut no = Vec::new();
        write_reply(&mut no, Err("cluster ID mismatch"))
            .await
            .unwrap();
        assert_eq!(
            read_reply(&mut &no[..]).await.unwrap(),
            Reply::Refused("cluster ID mismatch".into())
        );
    }

    #[tokio::test]
    async fn a_member_that_does_not_speak_the_protocol_is_recognized() {
        // An HTTP/2 server answers a bad preface with a GOAWAY frame, or just closes.
        let goaway = [0u8, 0, 8, 7, 0, 0, 0, 0, 0];
        assert_eq!(
            read_reply(&mut &goaway[..]).await.unwrap(),
            Reply::NotSpoken
        );
        assert_eq!(read_reply(&mut &b""[..]).await.unwrap(), Reply::NotSpoken);
        assert!(matches!(
            read_hello(&mut &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n........................"[..]).await,
            Err(WireError::BadPreface)
        ));
    }
}
