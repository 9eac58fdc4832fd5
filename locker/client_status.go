package locker

import (
	"context"
	"encoding/json"
	"fmt"
)

// KeyStatus asks the server for the status of one key ("status KEY"): a
// configured key, or a key a template matches, live or not. An unknown
// key is a *ServerError. The document's Raw field holds it whole.
func (c *Client) KeyStatus(ctx context.Context, key string) (KeyStatusDoc, error) {
	if err := ValidKeyName(key); err != nil {
		return KeyStatusDoc{}, err
	}
	r, err := c.Do(ctx, []byte("status "+key))
	if err != nil {
		return KeyStatusDoc{}, err
	}
	switch r.Kind {
	case ReplyStatus:
	case ReplyError:
		return KeyStatusDoc{}, &ServerError{Msg: r.Text}
	default:
		return KeyStatusDoc{}, fmt.Errorf("%w: not a status document", ErrBadReply)
	}
	var doc KeyStatusDoc
	if err := json.Unmarshal([]byte(r.Text), &doc); err != nil {
		return KeyStatusDoc{}, fmt.Errorf("locker: status %s: %w", key, err)
	}
	if doc.Key.Name != key {
		return KeyStatusDoc{}, fmt.Errorf("%w: status of %q answered for %q", ErrBadReply, key, doc.Key.Name)
	}
	doc.Raw = json.RawMessage(r.Text)
	return doc, nil
}

// KeyStatusDoc is the document a server returns for "status KEY".
type KeyStatusDoc struct {
	ID       string    `json:"id"`
	Protocol int       `json:"protocol"`
	Key      KeyStatus `json:"key"`
	// Raw is the whole document, as received.
	Raw json.RawMessage `json:"-"`
}
