-- Vendors are owned by the platform; this service only reads them.
CREATE TABLE IF NOT EXISTS vendors (
    vendor_id   text PRIMARY KEY,
    name        text NOT NULL,
    email       text,
    status      text NOT NULL CHECK (status IN ('active', 'suspended', 'pending')),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per upload, whatever became of it. No foreign key to vendors: uploads of unknown
-- vendors are recorded too.
CREATE TABLE IF NOT EXISTS upload_history (
    upload_id               text PRIMARY KEY,
    vendor_id               text NOT NULL,
    file_name               text NOT NULL,
    s3_bucket               text NOT NULL,
    s3_key                  text NOT NULL,
    s3_etag                 text,
    file_size_bytes         bigint,
    status                  text NOT NULL
        CHECK (status IN ('processing', 'staged', 'validated', 'rejected', 'failed')),
    total_records           integer NOT NULL DEFAULT 0,
    successful_records      integer NOT NULL DEFAULT 0,
    failed_records          integer NOT NULL DEFAULT 0,
    valid_records           integer,
    invalid_records         integer,
    attempts                integer NOT NULL DEFAULT 0,
    error_message           text,
    lease_expires_at        timestamptz,
    upload_timestamp        timestamptz,
    processing_started_at   timestamptz,
    processing_completed_at timestamptz,
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CHECK (status NOT IN ('rejected', 'failed') OR error_message IS NOT NULL)
);
CREATE INDEX IF NOT EXISTS upload_history_vendor_idx ON upload_history (vendor_id, upload_timestamp);
CREATE INDEX IF NOT EXISTS upload_history_status_idx ON upload_history (status, updated_at);

-- Written only by the validation stage (upserted).
CREATE TABLE IF NOT EXISTS products (
    vendor_id          text NOT NULL,
    vendor_product_id  text NOT NULL,
    sku                text NOT NULL,
    product_name       text NOT NULL,
    category           text NOT NULL,
    subcategory        text,
    description        text,
    brand              text,
    price              numeric(16, 4) NOT NULL,
    compare_at_price   numeric(16, 4),
    stock_quantity     bigint NOT NULL,
    unit               text,
    weight_kg          numeric(16, 4),
    dimensions_cm      text,
    image_url          text,
    extra              jsonb NOT NULL DEFAULT '{}'::jsonb,
    upload_id          text NOT NULL,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vendor_id, vendor_product_id)
);
