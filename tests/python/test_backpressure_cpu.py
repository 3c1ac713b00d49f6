"""A broker short of CPU cuts tenants' request time by itself: `kora dev --auth` with every
tenant request made expensive by fault injection (a busy loop of real CPU on the thread that
handles it), a heavy tenant sending from four connections at once. The broker sees ready work
wait for a thread while it uses its cores, cuts every tenant's request time (the backpressure
gauge falls below 100%), the heavy tenant is throttled through throttle_time_ms and muted
connections, not failed, and once the requests are cheap again the backpressure lifts."""
import threading
import time

from confluent_kafka import Producer

from conftest import Kora, kora_admin
from test_tenants import new_tenant, sasl


def hammer(conf, stop, errors):
    p = Producer({**conf, "linger.ms": 0, "acks": "1", "message.timeout.ms": 120000})

    def done(err, msg):
        if err is not None:
            errors.append(str(err))

    while not stop.is_set():
        try:
            p.produce("busy", b"b" * 100, on_delivery=done)
        except BufferError:
            pass
        p.poll(0.001)
    p.flush(120)


def test_a_broker_short_of_cpu_cuts_request_time_and_recovers():
    # Requests of 50 ms from four connections on two cores: ready work waits for a thread
    # for one request or more, so the test's threshold is 15 ms (the default is 100).
    k = Kora(extra=["--auth", "--set", "fault.injection.enable=true", "--set", "quota.broker.request.queue.ms=15"])
    try:
        key = new_tenant(k, "heavy")
        conf = sasl(k, key)
        assert k.gauge("kora_request_backpressure_percent") == 100
        assert k.admin_call("PUT", "/v1/faults/cpu", {"burn_ms_per_request": 50}) == {"burn_ms_per_request": 50}
        stop, errors = threading.Event(), []
        threads = [threading.Thread(target=hammer, args=(conf, stop, errors)) for _ in range(4)]
        for t in threads:
            t.start()
        seen, deadline = [], time.monotonic() + 90
        try:
            while time.monotonic() < deadline:
                time.sleep(1)
                seen.append(k.gauge("kora_request_backpressure_percent"))
                if min(seen) <= 80 and (kora_admin.metric(k.info, "kora_tenant_throttle_time_ms_total", f'tenant="{key["tenant"]}"') or 0.0) > 0:
                    break
        finally:
            stop.set()
            k.admin_call("DELETE", "/v1/faults/cpu")
            for t in threads:
                t.join(150)
        print(f"backpressure % each second: {seen}")
        assert min(seen) <= 80, f"no request-time backpressure under CPU overload, % each second: {seen}"
        throttled = (kora_admin.metric(k.info, "kora_tenant_throttle_time_ms_total", f'tenant="{key["tenant"]}"') or 0.0)
        assert throttled > 0, f"the heavy tenant was never throttled; backpressure % each second: {seen}"
        assert not errors, f"throttled, not failed: {errors[:3]}"
        # Cheap requests again, little load: the factor climbs back by a twentieth a window.
        deadline = time.monotonic() + 60
        while k.gauge("kora_request_backpressure_percent") < 100:
            assert time.monotonic() < deadline, "request-time backpressure outlived the overload"
            time.sleep(1)
    finally:
        k.stop()
