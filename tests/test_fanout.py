"""The hub service's log fan-out without a server: what one follower keeps and sends."""

from __future__ import annotations

from pico_nb.hub.fanout import FOLLOWER_BUFFER, Feed, Follower


def test_a_slow_follower_is_told_where_to_resume() -> None:
    follower = Follower(Feed(1, active=True), 0)
    follower.offer(0, b"line 0\n")
    assert [e.line for e in follower.drain()] == ["line 0"] and follower.resume_at == 7
    flood = b"".join(b"flood %d\n" % i for i in range(FOLLOWER_BUFFER // 16))
    follower.offer(7, flood)  # its viewer has not taken any of it yet
    assert follower.overflowed and follower.drain() == []
    assert follower.resume_at == 7  # where the next stream starts: nothing lost, no repeat


def test_new_bytes_reach_each_follower_from_its_own_place() -> None:
    feed = Feed(1, active=True)
    feed.end = 14  # "line 0\nline 1\n" was in the log when the feed opened
    live, behind = Follower(feed, 14), Follower(feed, 0)
    feed.end = 21
    for follower in (live, behind):
        follower.offer(14, b"line 2\n")
    assert [e.line for e in live.drain()] == ["line 2"] and not live.behind
    assert behind.drain() == [] and behind.behind  # it reads its own way up first
    behind.take(b"line 0\nline 1\nline 2\n")
    assert [e.line for e in behind.drain()] == ["line 0", "line 1", "line 2"]
    assert not behind.behind and behind.resume_at == 21
