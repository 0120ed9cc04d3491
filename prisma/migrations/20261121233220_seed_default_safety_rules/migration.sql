-- Written by hand: the default safety rules of spec §3 (table "Built-in action types"), for
-- every space. Admins change them later with upsertSafetyRule; this runs once, so their edits
-- are never overwritten.
INSERT INTO "SafetyRule" ("id", "ruleKey", "spaceId", "actionType", "kind", "limit", "windowSeconds", "enabled", "description", "createdAt", "updatedAt")
VALUES
  (gen_random_uuid(), '*:send_email:RATE_LIMIT:3600',            NULL, 'send_email',            'RATE_LIMIT',        50,   3600,  true, '50 emails per hour per user',              now(), now()),
  (gen_random_uuid(), '*:send_email:RATE_LIMIT:86400',           NULL, 'send_email',            'RATE_LIMIT',        500,  86400, true, '500 emails per day per user',              now(), now()),
  (gen_random_uuid(), '*:create_calendar_event:RATE_LIMIT:86400', NULL, 'create_calendar_event', 'RATE_LIMIT',        100,  86400, true, '100 calendar events per day per user',     now(), now()),
  (gen_random_uuid(), '*:create_document:RATE_LIMIT:86400',      NULL, 'create_document',       'RATE_LIMIT',        200,  86400, true, '200 documents per day per user',           now(), now()),
  (gen_random_uuid(), '*:move_file:REQUIRES_APPROVAL',           NULL, 'move_file',             'REQUIRES_APPROVAL', NULL, NULL,  true, 'moving files needs the user''s approval',  now(), now()),
  (gen_random_uuid(), '*:make_payment:BLOCKED',                  NULL, 'make_payment',          'BLOCKED',           NULL, NULL,  true, 'payments are blocked',                     now(), now()),
  (gen_random_uuid(), '*:make_purchase:REQUIRES_KYC',            NULL, 'make_purchase',         'REQUIRES_KYC',      NULL, NULL,  true, 'purchases need a verified KYC status',     now(), now()),
  (gen_random_uuid(), '*:make_purchase:REQUIRES_APPROVAL',       NULL, 'make_purchase',         'REQUIRES_APPROVAL', NULL, NULL,  true, 'purchases need the user''s approval',      now(), now()),
  (gen_random_uuid(), '*:order:REQUIRES_APPROVAL',               NULL, 'order',                 'REQUIRES_APPROVAL', NULL, NULL,  true, 'orders need the user''s approval',         now(), now())
ON CONFLICT ("ruleKey") DO NOTHING;
