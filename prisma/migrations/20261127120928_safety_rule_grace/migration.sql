-- AlterTable
ALTER TABLE "SafetyRule" ADD COLUMN     "graceSeconds" INTEGER;
