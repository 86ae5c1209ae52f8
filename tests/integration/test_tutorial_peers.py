"""The Python peers in framecast_test.py are the tutorial's programs: they talk to each other."""
from framecast_test import tutorial_client_source, tutorial_server_source


def test_tutorial_client_reads_tutorial_server(procs):
    server = procs.python(tutorial_server_source(sleep=0.2))
    port = int(server.wait_for(rb"port (\d+)", stream="out").group(1))
    client = procs.python(tutorial_client_source(port))
    client.wait_for(rb"full msg recvd\nWelcome to the server!\n", stream="out")
    client.wait_for(rb"full msg recvd\nThe time is \d+\.\d+\n(.|\n)*full msg recvd\nThe time is", stream="out")
