"""Building the Mininet network in parallel, bounded by the machine.

Mininet builds one node after another: each node is a shell (`mnexec bash`) started and
waited for (its prompt, then one command), and each is configured (addresses, routes,
interface state over netlink) in turn; with a thousand mobile nodes that is minutes of
waiting on processes and the kernel, one at a time. `ParallelMininet` starts the node
shells with up to `workers` (default four per core) in flight. Node configuration stays
on the main thread (a node's pyroute2 socket belongs to the thread that made it, and
the controller uses it later). Links stay one at a time in topology order
(Mininet's port numbering and interface bookkeeping are not thread-safe), but a link
served by a link hub costs a single request to the hub (testbed.links), and the hubs
create the TAPs of different links in parallel.

The result is the network Mininet would have built: the same nodes in the same order
(self.hosts follows the topology), the same links and ports.
"""
from __future__ import annotations

import os

from mininet.net import Mininet

from mip6bench.threads import ThreadPoolExecutor, result_of


def default_workers() -> int:
    return 4 * (os.cpu_count() or 1)


class ParallelMininet(Mininet):
    def __init__(self, *args, workers: int | None = None, **kw):
        self.workers = workers or default_workers()
        self._prebuilt: dict = {}
        super().__init__(*args, **kw)

    def buildFromTopo(self, topo=None):
        """Every host's shell started in parallel first; then Mininet's own build, which
        finds them ready (addHost)."""
        topo = topo or self.topo
        names = list(topo.hosts())

        def make(name):
            params = dict(topo.nodeInfo(name))
            cls = params.pop("cls", None) or self.host
            return name, cls(name, **params)

        with ThreadPoolExecutor(self.workers, thread_name_prefix="node") as pool:
            futures = [pool.submit(make, name) for name in names]
            try:
                for future in futures:
                    name, node = result_of(future)   # in steps: Ctrl-C is handled meanwhile
                    self._prebuilt[name] = node
            except BaseException:
                # Whatever did start is a node too: hand them to Mininet so stop() ends them.
                for future in futures:
                    if future.done() and future.exception() is None:
                        name, node = future.result()
                        self._prebuilt.pop(name, None)
                        if node not in self.hosts:
                            self.hosts.append(node)
                            self.nameToNode[name] = node
                raise
        super().buildFromTopo(topo)
        for link in self.links:  # relay links: wait for the hubs' answers
            finish = getattr(link, "finish", None)
            if finish is not None:
                finish()

    def addHost(self, name, cls=None, **params):
        node = self._prebuilt.pop(name, None)
        if node is None:
            return super().addHost(name, cls=cls, **params)
        self.hosts.append(node)
        self.nameToNode[name] = node
        return node
