package locker

import zmq "github.com/pebbe/zmq4"

// maxKeptFrames is the largest frame slice recvFrames keeps for reuse; a
// message with more frames gets a slice of its own.
const maxKeptFrames = 8

// recvFrames receives one message without waiting, like
// Socket.RecvMessageBytes(zmq.DONTWAIT), but into frames[:0], so the
// loops that call it for every request do not grow a new slice of frames
// each time. The frames themselves are fresh; only the outer slice is
// reused, so a caller that keeps the returned slice (a held waiter's
// envelope) must copy it first.
func recvFrames(sock *zmq.Socket, frames [][]byte) ([][]byte, error) {
	if cap(frames) > maxKeptFrames {
		frames = nil
	}
	frames = frames[:0]
	for {
		b, err := sock.RecvBytes(zmq.DONTWAIT)
		if err != nil {
			return frames[:0], err
		}
		frames = append(frames, b)
		more, err := sock.GetRcvmore()
		if err != nil {
			return frames[:0], err
		}
		if !more {
			return frames, nil
		}
	}
}
