# The seed design's zmqlocker.py server, ported to Python 3: only the
# bytes/str and xrange changes the language requires. Usage:
#   python3 seed_server.py tcp://*:7777 [max_requests] [in_seconds]
import sys
import time
import zmq


class Locker():
    def __init__(self, max_requests=1, in_seconds=1.0):
        self.max_requests = max_requests
        self.in_seconds = in_seconds
        self.requests = 0
        now = time.time()
        self.next_slot = now + in_seconds

    def __iter__(self):
        return self

    def __next__(self):
        now = time.time()
        if now > self.next_slot:
            self.requests = 0
            self.next_slot = now + self.in_seconds
        if self.requests < self.max_requests:
            self.requests += 1
            return b"go"
        else:
            return b"sorry"


class LockerServer():
    def __init__(self, max_requests=1, in_seconds=1.0, url="tcp://*:7777"):
        locker = Locker(max_requests, in_seconds)
        cnt = zmq.Context()
        sck = cnt.socket(zmq.REP)
        sck.bind(url)
        while True:
            msg = sck.recv()
            sck.send(next(locker))


if __name__ == "__main__":
    url = sys.argv[1] if len(sys.argv) > 1 else "tcp://*:7777"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 10.0
    LockerServer(max_requests=n, in_seconds=secs, url=url)
