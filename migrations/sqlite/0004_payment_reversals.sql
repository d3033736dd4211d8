-- Refunds and disputes (sqlite): a paid top-up remembers its Stripe PaymentIntent, so a
-- later `charge.refunded` / `charge.dispute.created` finds it, and how much of it has
-- been refunded and disputed, so each event debits only its new part and never more
-- than was paid.
-- Keep in step with migrations/postgres/0004_payment_reversals.sql.

ALTER TABLE payments ADD COLUMN payment_intent TEXT;
ALTER TABLE payments ADD COLUMN refunded_nano INTEGER NOT NULL DEFAULT 0;
ALTER TABLE payments ADD COLUMN disputed_nano INTEGER NOT NULL DEFAULT 0;
CREATE INDEX payments_intent ON payments(provider, payment_intent);
