"""Relays between a client and the test's PostgreSQL (pg_server.py) on a
Unix socket of their own, to fail the path the way networks do: a cut that
holds bytes (StallingProxy) or a connection lost right after the server
answered a COMMIT (CuttingProxy). A client reaches it with host = proxy.dir.
"""
import os
import shutil
import socket
import tempfile
import threading


class PgProxy:
    """Accepts on its own socket, connects each client to PostgreSQL's and
    hands both to relay(client, server), on threads of their own."""

    def __init__(self, target_dir, prefix):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.target = os.path.join(target_dir, ".s.PGSQL.5432")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(os.path.join(self.dir, ".s.PGSQL.5432"))
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            server.connect(self.target)
            self.relay(client, server)

    def relay(self, client, server):
        raise NotImplementedError

    @staticmethod
    def shut(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class StallingProxy(PgProxy):
    """stall() stops passing bytes either way, connections left open (a
    network cut, as the client sees it); flow() passes them again."""

    def __init__(self, target_dir):
        self.flowing = threading.Event()
        self.flowing.set()
        super().__init__(target_dir, "optgate-pg-stall-")

    def stall(self):
        self.flowing.clear()

    def flow(self):
        self.flowing.set()

    def relay(self, client, server):
        threading.Thread(target=self._pump, args=(client, server), daemon=True).start()
        threading.Thread(target=self._pump, args=(server, client), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(65536):
                self.flowing.wait()  # held, not dropped: it passes once flowing
                dst.sendall(data)
        except OSError:
            pass
        self.shut(src, dst)

    def close(self):
        self.flow()
        super().close()


class CuttingProxy(PgProxy):
    """After arm(), the next COMMIT a client sends reaches the server, and
    once the server answers, both sides are closed without passing the
    answer on: the commit happened, the client cannot know. `cut` is set
    then."""

    def __init__(self, target_dir):
        self.armed = threading.Event()
        self.cut = threading.Event()
        super().__init__(target_dir, "optgate-pg-proxy-")

    def arm(self):
        self.cut.clear()
        self.armed.set()

    def relay(self, client, server):
        state = {"drop": False}
        threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
        threading.Thread(target=self._down, args=(client, server, state), daemon=True).start()

    def _up(self, client, server, state):
        try:
            while data := client.recv(65536):
                # libpq sends COMMIT as a simple query ('Q'), after every
                # earlier answer was read: the server's next bytes answer it.
                if self.armed.is_set() and b"COMMIT\0" in data:
                    self.armed.clear()
                    state["drop"] = True
                server.sendall(data)
        except OSError:
            pass

    def _down(self, client, server, state):
        try:
            while data := server.recv(65536):
                if state["drop"]:
                    self.cut.set()
                    break
                client.sendall(data)
        except OSError:
            pass
        self.shut(client, server)
        client.close()
        server.close()
