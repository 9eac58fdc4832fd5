# The seed design's LockerClient, ported to Python 3 (bytes for str), and a
# loop that asks COUNT times every INTERVAL seconds and prints, per request,
# the time before sending, the time after the reply, and the reply.
# Usage: python3 seed_client.py tcp://127.0.0.1:7777 COUNT INTERVAL
import sys
import time
import zmq


class LockerClient():
    def __init__(self, url="tcp://localhost:7777"):
        cnt = zmq.Context()
        self.sck = cnt.socket(zmq.REQ)
        self.sck.connect(url)

    def next(self):
        self.sck.send(b"let me go")
        return self.sck.recv()


if __name__ == "__main__":
    locker_cli = LockerClient(sys.argv[1])
    count, interval = int(sys.argv[2]), float(sys.argv[3])
    for i in range(count):
        t0 = time.time_ns()
        reply = locker_cli.next()
        t1 = time.time_ns()
        print(t0, t1, reply.decode(), flush=True)
        time.sleep(interval)
