package locker

import (
	"encoding/binary"

	zmq "github.com/pebbe/zmq4"
)

// maxKeptFrames is the largest frame slice recvFrames keeps for reuse; a
// message with more frames gets a slice of its own.
const maxKeptFrames = 8

// userIDProperty is the message property in which ZeroMQ reports the
// User-Id that the ZAP handler gave the connection.
const userIDProperty = "User-Id"

// userAllowed reports whether a request with the User-Id user may be
// served: always when Config.ClientAllowed is nil, else when it allows
// user now.
func (s *Server) userAllowed(user string) bool {
	return s.cfg.ClientAllowed == nil || s.cfg.ClientAllowed(user)
}

// recvFrames receives one message without waiting, like
// Socket.RecvMessageBytes(zmq.DONTWAIT), but into frames[:0], so the
// loops that call it for every request do not grow a new slice of frames
// each time. The frames themselves are fresh; only the outer slice is
// reused, so a caller that keeps the returned slice (a held waiter's
// envelope) must copy it first.
func recvFrames(sock *zmq.Socket, frames [][]byte) ([][]byte, error) {
	msg, _, err := recvMessage(sock, frames, false)
	return msg, err
}

// recvMessage is recvFrames that, with withUser set, also returns the
// User-Id property of a message received by a ROUTER socket ("" when it
// has none).
func recvMessage(sock *zmq.Socket, frames [][]byte, withUser bool) ([][]byte, string, error) {
	if cap(frames) > maxKeptFrames {
		frames = nil
	}
	frames = frames[:0]
	var user string
	for {
		var b []byte
		var err error
		// The routing id that ROUTER adds is the first frame, and it
		// carries no metadata when it was read ahead for a poll: ask the
		// second, the client's first.
		if withUser && len(frames) == 1 {
			var md map[string]string
			b, md, err = sock.RecvBytesWithMetadata(zmq.DONTWAIT, userIDProperty)
			user = md[userIDProperty]
		} else {
			b, err = sock.RecvBytes(zmq.DONTWAIT)
		}
		if err != nil {
			return frames[:0], "", err
		}
		frames = append(frames, b)
		more, err := sock.GetRcvmore()
		if err != nil {
			return frames[:0], "", err
		}
		if !more {
			return frames, user, nil
		}
	}
}

// framesSize returns the bytes of all frames together.
func framesSize(frames [][]byte) int {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	return n
}

// packFrames appends frames to buf, each preceded by its length as a
// uvarint: a held wait keeps its envelope so, in one allocation, instead
// of the receive buffers of its frames.
func packFrames(buf []byte, frames [][]byte) []byte {
	for _, f := range frames {
		buf = binary.AppendUvarint(buf, uint64(len(f)))
		buf = append(buf, f...)
	}
	return buf
}

// packedLen returns len(packFrames(nil, frames)).
func packedLen(frames [][]byte) int {
	n := 0
	var tmp [binary.MaxVarintLen64]byte
	for _, f := range frames {
		n += binary.PutUvarint(tmp[:], uint64(len(f))) + len(f)
	}
	return n
}

// nextFrame splits the first frame off a packFrames buffer. It reports
// false when packed is empty or cut short.
func nextFrame(packed []byte) (frame, rest []byte, ok bool) {
	n, w := binary.Uvarint(packed)
	if w <= 0 || uint64(len(packed)-w) < n {
		return nil, nil, false
	}
	end := w + int(n)
	return packed[w:end], packed[end:], true
}
