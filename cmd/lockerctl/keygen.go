package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/lockerd/lockerd/locker/curve"
)

// KeygenCommand writes a new CURVE key pair.
type KeygenCommand struct{ g *globals }

// Usage implements command.
func (c *KeygenCommand) Usage() string {
	return "keygen --out PREFIX            write a CURVE key pair to PREFIX.pub and PREFIX.key (mode 0600)"
}

// Run implements command.
func (c *KeygenCommand) Run(_ context.Context, args []string) error {
	fs := c.g.flagSet("keygen")
	out := fs.StringP("out", "o", "", "file name prefix of the key pair")
	if err := c.g.parse(fs, c, args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("keygen needs --out PREFIX")
	}
	kp, err := curve.NewKeyPair()
	if err != nil {
		return err
	}
	if err := curve.WriteKeyPair(*out, kp); err != nil {
		return err
	}
	fmt.Fprintf(c.g.stdout, "wrote %s.pub and %s.key\npublic key: %s\n", *out, *out, kp.Public)
	return nil
}
