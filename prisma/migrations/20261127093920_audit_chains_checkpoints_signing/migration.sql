-- DropIndex
DROP INDEX "AuditEntry_hash_key";

-- AlterTable
ALTER TABLE "Action" ADD COLUMN     "auditHead" TEXT NOT NULL DEFAULT '',
ADD COLUMN     "auditSeq" INTEGER NOT NULL DEFAULT 0;

-- AlterTable
ALTER TABLE "Receipt" ADD COLUMN     "keyId" TEXT,
ADD COLUMN     "signature" TEXT;

-- AlterTable (edited by hand: entries written before this migration form the `legacy` chain,
-- format 1, in id order; the append-only trigger is paused for this one UPDATE)
ALTER TABLE "AuditEntry" ADD COLUMN     "chain" TEXT NOT NULL DEFAULT 'legacy',
ADD COLUMN     "chainSeq" INTEGER,
ADD COLUMN     "format" SMALLINT NOT NULL DEFAULT 1,
ADD COLUMN     "txid" BIGINT NOT NULL DEFAULT ((pg_current_xact_id())::text)::bigint;
ALTER TABLE "AuditEntry" DISABLE TRIGGER "AuditEntry_refuse_update_delete";
UPDATE "AuditEntry" e SET "chainSeq" = n.seq
  FROM (SELECT "id", row_number() OVER (ORDER BY "id")::int AS seq FROM "AuditEntry") n WHERE e."id" = n."id";
ALTER TABLE "AuditEntry" ENABLE TRIGGER "AuditEntry_refuse_update_delete";
ALTER TABLE "AuditEntry" ALTER COLUMN "chainSeq" SET NOT NULL,
ALTER COLUMN "chain" DROP DEFAULT,
ALTER COLUMN "format" SET DEFAULT 2;

-- CreateTable
CREATE TABLE "AuditChainHead" (
    "chain" TEXT NOT NULL,
    "seq" INTEGER NOT NULL,
    "head" TEXT NOT NULL,

    CONSTRAINT "AuditChainHead_pkey" PRIMARY KEY ("chain")
);

-- CreateTable
CREATE TABLE "AuditCheckpoint" (
    "id" BIGSERIAL NOT NULL,
    "prevHash" TEXT NOT NULL,
    "hash" TEXT NOT NULL,
    "lastTxid" BIGINT NOT NULL,
    "lastId" BIGINT NOT NULL,
    "entryCount" INTEGER NOT NULL,
    "entries" TEXT NOT NULL,
    "signature" TEXT NOT NULL,
    "keyId" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "AuditCheckpoint_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "SigningKey" (
    "keyId" TEXT NOT NULL,
    "publicKey" TEXT NOT NULL,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "SigningKey_pkey" PRIMARY KEY ("keyId")
);

-- CreateIndex
CREATE UNIQUE INDEX "AuditCheckpoint_hash_key" ON "AuditCheckpoint"("hash");

-- CreateIndex
CREATE INDEX "AuditEntry_txid_id_idx" ON "AuditEntry"("txid", "id");

-- CreateIndex
CREATE UNIQUE INDEX "AuditEntry_chain_chainSeq_key" ON "AuditEntry"("chain", "chainSeq");
