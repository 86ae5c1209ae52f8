# A client for `framecast serve --channels`, written from docs/channels.md alone (the tutorial's
# framing: a 10-byte, left-aligned ASCII length, then the payload). Usage:
#   channels_client.py PORT sub PATTERN COUNT   prints COUNT deliveries as "channel > payload"
#   channels_client.py PORT pub CHANNEL MESSAGE publishes one message, waits for the PING's pong
import socket, sys
H = 10
def send(s, text): data = text.encode(); s.sendall(f"{len(data):<{H}}".encode() + data)
def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk: raise EOFError("server closed the connection")
        data += chunk
    return data
def recv_frame(s): return recv_exact(s, int(recv_exact(s, H))).decode()
def recv_pair(s): return recv_frame(s), recv_frame(s)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
verb, name = sys.argv[2], sys.argv[3]
if verb == "sub":
    send(s, "SUB " + name)
    print(*recv_pair(s), flush=True)  # "$sys.ok SUB pattern": the subscription is live
    for _ in range(int(sys.argv[4])): print("%s > %s" % recv_pair(s), flush=True)
else:
    send(s, "PUB " + name); send(s, sys.argv[4]); send(s, "PING")
    channel, text = recv_pair(s)
    sys.exit(0 if channel == "$sys.pong" else "refused: %s %s" % (channel, text))
