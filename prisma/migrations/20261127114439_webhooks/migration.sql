-- CreateEnum
CREATE TYPE "WebhookDeliveryState" AS ENUM ('PENDING', 'DELIVERED', 'FAILED');

-- CreateTable
CREATE TABLE "WebhookEndpoint" (
    "id" UUID NOT NULL,
    "spaceId" UUID NOT NULL,
    "url" TEXT NOT NULL,
    "secretCiphertext" TEXT NOT NULL,
    "events" "ActionStatus"[],
    "enabled" BOOLEAN NOT NULL DEFAULT true,
    "consecutiveFailures" INTEGER NOT NULL DEFAULT 0,
    "disabledAt" TIMESTAMPTZ(3),
    "disabledReason" TEXT,
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "WebhookEndpoint_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "WebhookDelivery" (
    "id" UUID NOT NULL,
    "position" BIGSERIAL NOT NULL,
    "endpointId" UUID NOT NULL,
    "actionId" UUID NOT NULL,
    "status" "ActionStatus" NOT NULL,
    "seq" INTEGER NOT NULL,
    "message" TEXT,
    "statusAt" TIMESTAMPTZ(3) NOT NULL,
    "state" "WebhookDeliveryState" NOT NULL DEFAULT 'PENDING',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    "lastStatusCode" INTEGER,
    "lastError" TEXT,
    "nextAttemptAt" TIMESTAMPTZ(3),
    "lastAttemptAt" TIMESTAMPTZ(3),
    "createdAt" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "deliveredAt" TIMESTAMPTZ(3),

    CONSTRAINT "WebhookDelivery_pkey" PRIMARY KEY ("id")
);

-- CreateIndex
CREATE INDEX "WebhookEndpoint_spaceId_enabled_idx" ON "WebhookEndpoint"("spaceId", "enabled");

-- CreateIndex
CREATE UNIQUE INDEX "WebhookEndpoint_spaceId_url_key" ON "WebhookEndpoint"("spaceId", "url");

-- CreateIndex
CREATE UNIQUE INDEX "WebhookDelivery_position_key" ON "WebhookDelivery"("position");

-- CreateIndex
CREATE INDEX "WebhookDelivery_endpointId_state_position_idx" ON "WebhookDelivery"("endpointId", "state", "position");

-- CreateIndex
CREATE INDEX "WebhookDelivery_endpointId_position_idx" ON "WebhookDelivery"("endpointId", "position" DESC);

-- CreateIndex
CREATE INDEX "WebhookDelivery_actionId_position_idx" ON "WebhookDelivery"("actionId", "position" DESC);

-- CreateIndex
CREATE INDEX "WebhookDelivery_state_nextAttemptAt_idx" ON "WebhookDelivery"("state", "nextAttemptAt");

-- AddForeignKey
ALTER TABLE "WebhookEndpoint" ADD CONSTRAINT "WebhookEndpoint_spaceId_fkey" FOREIGN KEY ("spaceId") REFERENCES "Space"("id") ON DELETE CASCADE ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "WebhookDelivery" ADD CONSTRAINT "WebhookDelivery_endpointId_fkey" FOREIGN KEY ("endpointId") REFERENCES "WebhookEndpoint"("id") ON DELETE CASCADE ON UPDATE CASCADE;
