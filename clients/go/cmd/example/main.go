// Command example enrolls a TOTP second factor with a live totpd server and uses it:
// CreateTotp, compute the current code from the returned secret (as the user's
// authenticator app would), ActivateTotp with it, then VerifyTotp with the next time
// step's code, and finally DeleteTotp so it leaves nothing behind.
//
// It reads the server address from TOTPD_ADDRESS (default 127.0.0.1:50051) and prints each
// result, never the secret, a code or a recovery code.
//
//	go run ./cmd/example [-user ID]
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	totpd "github.com/totpd/totpd/clients/go"
	"github.com/totpd/totpd/clients/go/totpdv1"
)

// DefaultAddress is the server address used when TOTPD_ADDRESS is unset.
const DefaultAddress = "127.0.0.1:50051"

func main() {
	user := flag.String("user", "", "the user_id to enroll (default: a fresh go-example-<random> id)")
	flag.Parse()
	if err := mainErr(*user); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

func mainErr(userID string) error {
	address := Address()
	if userID == "" {
		userID = NewUserID("go-example")
	}
	client, err := totpd.Dial(address)
	if err != nil {
		return err
	}
	defer client.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fmt.Printf("totpd at %s, user %s\n", address, userID)
	flowErr := Run(ctx, client, userID, time.Now, os.Stdout)

	// Leave nothing behind, even after a failure: deleting what does not exist succeeds.
	del, err := client.DeleteTotp(ctx, &totpdv1.DeleteTotpRequest{UserId: userID})
	if flowErr != nil {
		return flowErr
	}
	if err != nil {
		return fmt.Errorf("DeleteTotp: %w (reason %q)", err, totpd.ErrorReason(err))
	}
	fmt.Printf("DeleteTotp: deleted=%t\n", del.GetDeleted())
	return nil
}

// Address returns TOTPD_ADDRESS, or DefaultAddress if it is unset or empty.
func Address() string {
	if a := os.Getenv("TOTPD_ADDRESS"); a != "" {
		return a
	}
	return DefaultAddress
}

// NewUserID returns prefix-<16 random hex digits>, a user_id no other run uses.
func NewUserID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return prefix + "-" + hex.EncodeToString(b[:])
}

// Run creates, activates and verifies a TOTP for userID, computing the codes from the
// secret at now(), and writes what each call returned to out.
func Run(ctx context.Context, client totpdv1.TotpServiceClient, userID string,
	now func() time.Time, out io.Writer) error {
	created, err := client.CreateTotp(ctx, &totpdv1.CreateTotpRequest{UserId: userID})
	if err != nil {
		return fmt.Errorf("CreateTotp: %w (reason %q)", err, totpd.ErrorReason(err))
	}
	t := created.GetTotp()
	fmt.Fprintf(out, "CreateTotp: totp_id=%s state=%s algorithm=%s digits=%d period=%s recovery_codes=%d expire_time=%s\n",
		created.GetTotpId(), t.GetState(), t.GetAlgorithm(), t.GetDigits(), t.GetPeriod().AsDuration(),
		len(created.GetRecoveryCodes()), created.GetExpireTime().AsTime().Format(time.RFC3339))

	// The code the user's app shows right now.
	at := now()
	code, err := Code(created.GetSecret(), t, at)
	if err != nil {
		return err
	}
	activated, err := client.ActivateTotp(ctx, &totpdv1.ActivateTotpRequest{
		UserId: userID, TotpId: created.GetTotpId(), Code: code,
	})
	if err != nil {
		return fmt.Errorf("ActivateTotp: %w (reason %q)", err, totpd.ErrorReason(err))
	}
	fmt.Fprintf(out, "ActivateTotp: totp_id=%s state=%s replaced_totp_id=%q\n",
		activated.GetTotp().GetTotpId(), activated.GetTotp().GetState(), activated.GetReplacedTotpId())

	// Activation used up the code of that step (and every older one); the server also
	// accepts the next step's code (drift of +1 step), so verify with that at once. It is
	// one step after the step used above, whatever the clock says by now.
	code, err = Code(created.GetSecret(), t, at.Add(Period(t)))
	if err != nil {
		return err
	}
	verified, err := client.VerifyTotp(ctx, &totpdv1.VerifyTotpRequest{UserId: userID, Code: code})
	if err != nil {
		return fmt.Errorf("VerifyTotp: %w (reason %q)", err, totpd.ErrorReason(err))
	}
	fmt.Fprintf(out, "VerifyTotp: totp_id=%s time_step_offset=%+d\n",
		verified.GetTotpId(), verified.GetTimeStepOffset())
	return nil
}

// Period returns the time step of t; 30 seconds if unset.
func Period(t *totpdv1.Totp) time.Duration {
	if p := t.GetPeriod().AsDuration(); p > 0 {
		return p
	}
	return 30 * time.Second
}

// Code returns the RFC 6238 code of the base32 secret at time at, with the parameters
// of t (algorithm, digits, period), as an authenticator app computes it.
func Code(secret string, t *totpdv1.Totp, at time.Time) (string, error) {
	digits := otp.DigitsSix
	if t.GetDigits() == 8 {
		digits = otp.DigitsEight
	}
	algorithm := otp.AlgorithmSHA1
	switch t.GetAlgorithm() {
	case totpdv1.TotpAlgorithm_TOTP_ALGORITHM_SHA256:
		algorithm = otp.AlgorithmSHA256
	case totpdv1.TotpAlgorithm_TOTP_ALGORITHM_SHA512:
		algorithm = otp.AlgorithmSHA512
	}
	code, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{
		Period:    uint(Period(t) / time.Second),
		Digits:    digits,
		Algorithm: algorithm,
	})
	if err != nil {
		return "", fmt.Errorf("computing the TOTP code: %w", err)
	}
	return code, nil
}
