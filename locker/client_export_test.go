package locker

// ClientAttempts returns how many attempts c's loop has sent.
func ClientAttempts(c *Client) int64 { return c.stats.attempts.Load() }

// ClientLateWakeups returns how many times c's loop found a call queued
// after sleeping its whole timeout: each is a wake-up lost (or a call that
// came just as the timeout ended).
func ClientLateWakeups(c *Client) int64 { return c.stats.lateWakeups.Load() }

// ClientTicks returns how many times c's loop slept its whole timeout.
func ClientTicks(c *Client) int64 { return c.stats.ticks.Load() }

// ClientDirect returns how many calls of c their callers sent themselves,
// without the loop.
func ClientDirect(c *Client) int64 { return c.stats.direct.Load() }

// ClientHandoffs returns how many of those their callers then left to the
// loop, because no answer came within directWait.
func ClientHandoffs(c *Client) int64 { return c.stats.handoffs.Load() }
