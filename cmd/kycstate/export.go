package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/kycstate/kycstate/domain"
	"github.com/kycstate/kycstate/store/eventlog"
)

func cmdExport(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "export", `Writes every event of the log as JSON lines, in stream order: the stored message
exactly as kept (raw body and signature included, so authenticity can be re-verified offline)
with its stream sequence added as "seq". Events stored sealed (versions 2 and 3) are written
sealed, as kept, so their digests and MACs can be checked; with --open their externalUserId,
payload and raw are opened under the applicant's data key (keys.master needed), an operator
event's payload (who erased and why) under the log key, and the sealed values and the MAC
left out. An erased applicant's events have no key left and are written without them. An
event whose MAC does not verify is written as stored, never opened.`+offlineNote)
	cfgPath := fs.String("config", "", "YAML config file")
	openSealed := fs.Bool("open", false, "open sealed personal fields (needs keys.master)")
	outPath := fs.String("out", "", "file to write (default: standard output)")
	if err := parse(fs, args); err != nil {
		return err
	}
	o, err := openOps(ctx, e, *cfgPath, opsOptions{NeedKeys: *openSealed})
	if err != nil {
		return err
	}
	defer o.Close()
	var w io.Writer = e.stdout
	var f *os.File
	if *outPath != "" {
		if f, err = os.OpenFile(*outPath, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err != nil {
			return fmt.Errorf("--out: %w", err)
		}
		defer f.Close()
		w = f
	}
	out := bufio.NewWriterSize(w, 1<<20)
	p := newProgress(e, "export")
	last, err := o.events.LastSeq(ctx)
	if err != nil {
		return err
	}
	n := 0
	err = o.events.Read(ctx, 1, 1000, func(batch []domain.Event) error {
		for _, ev := range batch {
			stored := ev.Stored
			if *openSealed {
				if stored, err = openedEvent(ctx, o.events, ev); err != nil {
					return err
				}
			}
			out.WriteString(`{"seq":`)
			out.WriteString(strconv.FormatUint(ev.Seq, 10))
			if len(stored) > 2 {
				out.WriteByte(',')
				out.Write(stored[1:])
			} else {
				out.WriteByte('}')
			}
			if err := out.WriteByte('\n'); err != nil {
				return err
			}
			n++
		}
		p.report(batch[len(batch)-1].Seq, last)
		return nil
	})
	p.done()
	if err != nil {
		return err
	}
	if err := out.Flush(); err != nil {
		return err
	}
	if f != nil {
		if err := f.Sync(); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "exported %d events to %s\n", n, *outPath)
	}
	return nil
}

// openedEvent is ev's stored message with its sealed fields opened (export --open); an
// erased applicant's event comes without them. An event whose MAC failed is written as
// stored, unopened: only what kycstate wrote is decrypted.
func openedEvent(ctx context.Context, events *eventlog.EventLog, ev domain.Event) ([]byte, error) {
	if ev.V < domain.StoredVersionSealed || ev.Auth == domain.AuthFailed {
		return ev.Stored, nil
	}
	full, err := eventlog.DecodeEvent(ev.Seq, ev.Stored) // Read leaves Sealed out
	if err != nil {
		return nil, err
	}
	if full.Sealed == "" && full.SealedExternalUserID == "" {
		return ev.Stored, nil
	}
	if err := events.Keys().Open(ctx, &full); err != nil && !errors.Is(err, eventlog.ErrErased) {
		return nil, err
	}
	full.Sealed, full.SealedExternalUserID, full.ExternalUserIndex = "", "", ""
	return eventlog.EncodeEvent(&full)
}
