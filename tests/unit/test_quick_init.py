"""sansio.quick_init: the frozen dataclasses it speeds up get the fields, defaults,
keyword-only parameters and __post_init__ their generated __init__ gives, and stay
frozen, equal and hashable as before."""
import dataclasses
import inspect

import pytest

import mip6bench.aaa.paa_service  # noqa: F401  (the classes below register on import)
import mip6bench.aaa.radius_attrs  # noqa: F401
import mip6bench.aaa.radius_client  # noqa: F401
import mip6bench.eap.actions  # noqa: F401
import mip6bench.eap.packet  # noqa: F401
import mip6bench.pana.channel  # noqa: F401
import mip6bench.pana.effects  # noqa: F401
import mip6bench.pana.message  # noqa: F401
import mip6bench.sansio
from mip6bench.sansio import Event, Transmit, quick_init


MODULES = (mip6bench.sansio, mip6bench.aaa.paa_service, mip6bench.aaa.radius_attrs,
           mip6bench.aaa.radius_client, mip6bench.eap.actions, mip6bench.eap.packet,
           mip6bench.pana.channel, mip6bench.pana.effects, mip6bench.pana.message)


def _quick_classes():
    return [cls for m in MODULES for cls in vars(m).values()
            if isinstance(cls, type) and cls.__module__ == m.__name__
            and "_dataclass_init" in cls.__dict__]


QUICK = _quick_classes()


def test_the_hot_classes_have_it():
    names = {c.__name__ for c in QUICK}
    assert {"Transmit", "StartTimer", "StopTimer", "Event", "ServiceTransmit", "Avp",
            "Message", "Peer", "RadiusAnswer", "SendToAAA", "EapPacket"} <= names


@pytest.mark.parametrize("cls", QUICK, ids=lambda c: c.__name__)
def test_same_instance_as_the_generated_init(cls):
    params = list(inspect.signature(cls._dataclass_init).parameters.values())[1:]
    args, kwargs = [], {}
    for k, p in enumerate(params):      # a distinct value for every field
        value = f"value-{k}"
        if p.kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    for n_args in range(len(args) + 1):   # every default left out, in turn
        if any(p.default is inspect.Parameter.empty for p in params[n_args:len(args)]):
            continue
        quick, generated = object.__new__(cls), object.__new__(cls)
        cls.__init__(quick, *args[:n_args], **kwargs)
        cls._dataclass_init(generated, *args[:n_args], **kwargs)
        assert quick.__dict__ == generated.__dict__
        assert quick == generated and repr(quick) == repr(generated)


def test_defaults_factories_kw_only_post_init_and_frozen():
    @quick_init
    @dataclasses.dataclass(frozen=True)
    class Thing:
        a: int
        items: list = dataclasses.field(default_factory=list)
        hidden: int = dataclasses.field(default=3, init=False)
        tag: str = dataclasses.field(default="t", kw_only=True)

        def __post_init__(self):
            object.__setattr__(self, "double", 2 * self.a)

    one, two = Thing(1), Thing(1)
    assert one.items == [] and one.items is not two.items and one.hidden == 3
    assert Thing(2, tag="x").tag == "x" and one.double == 2
    assert one == two and hash(Thing(1, (1,))) == hash(Thing(1, (1,)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        one.a = 5
    with pytest.raises(TypeError):
        Thing(1, [], "positional tag")
    assert Event("e").fields == {} and Event("e").fields is not Event("e").fields
    assert dataclasses.replace(Transmit(b"x", "::1"), port=716).port == 716


def test_refuses_what_it_cannot_reproduce():
    @dataclasses.dataclass(frozen=True)
    class WithInitVar:
        a: int
        b: dataclasses.InitVar[int] = 0

        def __post_init__(self, b):
            pass

    @dataclasses.dataclass
    class NotFrozen:
        a: int

    for cls in (WithInitVar, NotFrozen):
        with pytest.raises(TypeError):
            quick_init(cls)
