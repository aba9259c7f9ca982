package srapi

// Token is the token the next heartbeat will send, for tests of the chain.
func (s *Session) Token() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// ParseRetryAfter is parseRetryAfter, for its table test.
var ParseRetryAfter = parseRetryAfter
