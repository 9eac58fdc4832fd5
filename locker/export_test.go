package locker

import "time"

// SetPollInterval sets how long the loop of s may sleep with nothing to
// do; it must be called before Run. Tests use it to make a loop that
// fails to wake for a held wait fail for certain, not by a few
// milliseconds.
func SetPollInterval(s *Server, d time.Duration) { s.poll = d }
