-- AlterTable
ALTER TABLE "SafetyRule" ADD COLUMN     "condition" TEXT;
